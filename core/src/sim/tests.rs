//! World tests with a small hand-written lease agent (independent of the lease machines), so
//! the world, the broker model and the checkers are tested on their own.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::*;
use crate::client::{Output, RequestId, Requester};
use crate::command::{Request, Response, SetCondition, SetOutcome};
use crate::hlc::Hlc;
use crate::time::Instant;

/// SET NEX PX, renew every `renew`, Lost at `safe_until`. `extend` is added to its
/// `safe_until` (0 for a correct agent).
struct RawLease {
    key: Bytes,
    px: Duration,
    renew: Duration,
    margin: Duration,
    extend: Duration,
    pending: Option<(RequestId, Instant, bool)>,
    held: Option<(Hlc, Instant)>,
    next_attempt: Option<Instant>,
    renew_at: Option<Instant>,
    stopped: bool,
}

impl RawLease {
    fn send_set(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let req = Request::Set {
            key: self.key.clone(),
            value: Bytes::copy_from_slice(ctx.client_id().as_bytes()),
            condition: SetCondition::NotExistsOrEqual,
            px_ms: Some(self.px.as_millis() as u64),
        };
        if let Ok(id) = ctx.requester().request(req, Default::default(), now) {
            self.pending = Some((id, now.mono, false));
        }
    }

    fn backoff(&mut self, ctx: &mut Ctx<'_>) {
        let jitter = ctx.rng().below(200);
        self.next_attempt = Some(ctx.now().mono + Duration::from_millis(100 + jitter));
    }
}

impl Agent for RawLease {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.next_attempt = Some(ctx.now().mono);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let Output::Completion(c) = output else {
            return;
        };
        let Some((id, issued, vdel)) = self.pending else {
            return;
        };
        if c.id != id {
            return;
        }
        self.pending = None;
        if vdel {
            return;
        }
        let now = ctx.now().mono;
        match (&c.result, &c.version) {
            (Ok(Response::Set(SetOutcome::Applied)), Some(v)) if !self.stopped => {
                let safe_until = issued + self.px - self.margin + self.extend;
                if safe_until <= now {
                    return self.backoff(ctx);
                }
                let report = if self.held.is_some() {
                    Report::Renewed {
                        key: self.key.clone(),
                        token: v.clone(),
                        safe_until,
                    }
                } else {
                    Report::Acquired {
                        key: self.key.clone(),
                        token: v.clone(),
                        safe_until,
                        renewing: true,
                    }
                };
                ctx.report(report);
                self.held = Some((v.clone(), safe_until));
                self.renew_at = Some(now + self.renew);
            }
            (Ok(Response::Set(SetOutcome::NotApplied)), _) if self.held.is_some() => {
                self.held = None;
                ctx.report(Report::Lost {
                    key: self.key.clone(),
                });
                self.backoff(ctx);
            }
            _ if self.held.is_some() => {
                self.renew_at = Some(now + Duration::from_millis(50));
            }
            _ => self.backoff(ctx),
        }
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now().mono;
        if let Some((_, safe_until)) = &self.held {
            if now >= *safe_until {
                self.held = None;
                ctx.report(Report::Lost {
                    key: self.key.clone(),
                });
                self.backoff(ctx);
            }
        }
        if self.pending.is_some() || self.stopped {
            return;
        }
        let due = match self.held {
            Some(_) => self.renew_at.is_some_and(|t| t <= now),
            None => self.next_attempt.is_some_and(|t| t <= now),
        };
        if due {
            self.next_attempt = None;
            self.renew_at = None;
            self.send_set(ctx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let safe = self.held.as_ref().map(|(_, s)| *s);
        let next = if self.pending.is_some() || self.stopped {
            None
        } else if self.held.is_some() {
            self.renew_at
        } else {
            self.next_attempt
        };
        match (safe, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.next_attempt = None;
        self.renew_at = None;
        if self.held.take().is_some() {
            ctx.report(Report::Released {
                key: self.key.clone(),
            });
            let now = ctx.now();
            let req = Request::Vdel {
                key: self.key.clone(),
                value: Bytes::copy_from_slice(ctx.client_id().as_bytes()),
            };
            if self.pending.is_none() {
                if let Ok(id) = ctx.requester().request(req, Default::default(), now) {
                    self.pending = Some((id, now.mono, true));
                }
            }
        }
    }

    fn outstanding(&self) -> usize {
        usize::from(self.pending.is_some())
    }
}

struct RawWorkload {
    px: Duration,
    extend: Duration,
}

impl Workload for RawWorkload {
    fn agent(&mut self, _node: usize, _inc: u32, _seed: u64) -> Box<dyn Agent> {
        Box::new(RawLease {
            key: Bytes::from_static(b"lease"),
            px: self.px,
            renew: self.px / 4,
            margin: self.px / 10,
            extend: self.extend,
            pending: None,
            held: None,
            next_attempt: None,
            renew_at: None,
            stopped: false,
        })
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        vec![Bytes::from_static(b"lease")]
    }

    fn liveness_bound(&self) -> Option<Duration> {
        Some(self.px * 2 + Duration::from_secs(5))
    }

    fn quiet_window(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }
}

fn raw(seed: u64, clients: usize, faults: FaultMix) -> Sim {
    let px = Duration::from_secs(2);
    let run = Duration::from_secs(60);
    let mut config = SimConfig::new(seed, clients, run);
    config.faults = faults.config(px, clients, run);
    Sim::new(
        config,
        RawWorkload {
            px,
            extend: Duration::ZERO,
        },
    )
}

#[test]
fn fault_free_run_keeps_every_invariant() {
    let s = raw(1, 6, FaultMix::NONE)
        .run()
        .unwrap_or_else(|v| panic!("{v}"));
    assert!(s.checks.acquisitions >= 1, "{s:?}");
    assert!(s.checks.renewals > 20, "{s:?}");
    assert_eq!(s.checks.losses, 0, "{s:?}");
    assert!(!s.truncated);
}

#[test]
fn faulty_runs_keep_every_invariant() {
    for seed in 0..6 {
        let s = raw(seed, 5, FaultMix::ALL)
            .run()
            .unwrap_or_else(|v| panic!("{v}"));
        assert!(s.checks.acquisitions >= 1, "{s:?}");
    }
}

#[test]
fn same_seed_same_trace_hash() {
    let a = raw(7, 4, FaultMix::ALL).run().unwrap();
    let b = raw(7, 4, FaultMix::ALL).run().unwrap();
    let c = raw(8, 4, FaultMix::ALL).run().unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn an_agent_that_overstates_safe_until_is_caught() {
    let px = Duration::from_secs(2);
    let config = SimConfig::new(3, 3, Duration::from_secs(20));
    let v = Sim::new(
        config,
        RawWorkload {
            px,
            extend: Duration::from_secs(1),
        },
    )
    .run()
    .unwrap_err();
    assert_eq!(v.invariant, Invariant::S2SafeUntil, "{v}");
    assert_eq!(v.seed, 3);
    assert!(!v.trace.is_empty());
}

/// Counts what a probe is told, with times.
#[derive(Default)]
struct Counting {
    requests: u64,
    acquired: u64,
    last: Duration,
    ordered: bool,
}

impl Probe for Counting {
    fn on_store_request(&mut self, at: Duration, _node: usize, request: &crate::envelope::Message) {
        self.ordered &= at >= self.last;
        self.last = at;
        self.requests += u64::from(!request.payload.is_empty());
    }

    fn on_report(&mut self, at: Duration, _node: usize, report: &Report) {
        self.ordered &= at >= self.last;
        self.last = at;
        self.acquired += u64::from(matches!(report, Report::Acquired { .. }));
    }
}

#[test]
fn a_probe_sees_every_store_request_and_report_in_time_order() {
    let mut probe = Counting {
        ordered: true,
        ..Counting::default()
    };
    let s = raw(2, 3, FaultMix::NONE).run_probed(&mut probe).unwrap();
    assert_eq!(probe.requests, s.store_requests);
    assert_eq!(probe.acquired, s.checks.acquisitions);
    assert!(probe.ordered);
    // Watching changes nothing.
    let plain = raw(2, 3, FaultMix::NONE).run().unwrap();
    assert_eq!(plain.trace_hash, s.trace_hash);
}

/// Fuzz finding (sim_faults): a broker disconnect of 7.7 s started before healing outlasts the
/// drain; at the reconnect the lease arms its bounded sweep STOP (a KEYNOTIFY may be published
/// again), and the leak check ran before it could fire. The world now keeps running past the
/// drain until every live node is at rest (bounded by `SimConfig::settle`).
fn long_disconnect(settle: Duration) -> Result<Summary, Box<Violation>> {
    let s: Scenario =
        "seed=3103719485 workload=edit clients=1 lease_ms=200 renew_ms=66 faults=0x000 run_secs=2"
            .parse()
            .map_err(|_| "scenario line")
            .unwrap_or_else(|e| panic!("{e}"));
    let mut c = s.config();
    c.clocks.max_rate_ppm = 0;
    c.clocks.max_wall_skew = Duration::ZERO;
    let len = Duration::from_millis(7_748);
    c.faults.disconnect = Some(Recurring::new(Duration::from_millis(69), len, len));
    c.settle = settle;
    s.sim_with(c)?.run()
}

#[test]
fn cleanup_after_a_disconnect_outlasting_the_drain_runs_before_the_leak_checks() {
    let s = long_disconnect(SimConfig::new(0, 1, Duration::from_secs(1)).settle)
        .unwrap_or_else(|v| panic!("{v}"));
    assert!(!s.truncated);
    // The sweep ran after the drain's nominal end.
    assert!(s.virtual_time > Duration::from_millis(8_302), "{s:?}");
    // Without the settle phase the same run reports the sweep's timer as a leak.
    let v = long_disconnect(Duration::ZERO).expect_err("checked too early");
    assert_eq!(v.invariant, Invariant::Leak, "{v}");
}

/// Fuzz finding (sim_faults): a request given a 3.5 s heavy-tail delay just before the heal
/// held up every later message on its FIFO link, so the network healed only when it landed;
/// the L1 progress check counted its bound from the nominal heal and failed.
fn tail_across_the_heal() -> Result<Summary, Box<Violation>> {
    let s: Scenario =
        "seed=2619 workload=lease clients=1 lease_ms=200 renew_ms=28 faults=0x000 run_secs=9"
            .parse()
            .map_err(|_| "scenario line")
            .unwrap_or_else(|e| panic!("{e}"));
    let mut c = s.config();
    c.clocks.max_rate_ppm = 9;
    c.clocks.max_wall_skew = Duration::from_millis(25_857);
    let f = &mut c.faults;
    f.drop = 137.0 / 1024.0;
    f.duplicate = 184.0 / 1024.0;
    f.tail = 176.0 / 1024.0;
    f.tail_delay = Duration::from_millis(3_580);
    f.notification_loss = 78.0 * 4.0 / 1024.0;
    f.late_reply = 237.0 / 1024.0;
    f.partition = Some(Recurring::new(
        Duration::from_millis(23_824),
        Duration::from_millis(1_779),
        Duration::from_millis(9_862),
    ));
    s.sim_with(c)?.run()
}

#[test]
fn progress_is_checked_after_tail_delayed_messages_land() {
    let sum = tail_across_the_heal().unwrap_or_else(|v| panic!("{v}"));
    assert!(sum.checks.acquisitions >= 1, "{sum:?}");
}

/// Fuzz finding (sim_faults): nodes crashing all the time; a KEYNOTIFY of a crashed
/// incarnation, still on the wire, reached the store after the crash had dropped the client's
/// registrations and registered anew for a client with no connection, which the leak check
/// then reported. The store now drops it like any registration of a disconnected client.
#[test]
fn a_registration_sent_before_a_crash_does_not_outlive_it() {
    let s: Scenario = "seed=18446744073441053243 workload=leader clients=4 lease_ms=200 renew_ms=66 faults=0x000 run_secs=4"
        .parse()
        .map_err(|_| "scenario line")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = s.config();
    c.clocks.max_rate_ppm = 0;
    c.clocks.max_wall_skew = Duration::ZERO;
    let f = &mut c.faults;
    f.duplicate = 255.0 / 1024.0;
    f.reorder = true;
    f.tail = 255.0 / 1024.0;
    f.tail_delay = Duration::from_millis(535);
    f.notification_loss = 65.0 * 4.0 / 1024.0;
    f.late_reply = 51.0 / 1024.0;
    f.crash = Some(Recurring::new(
        Duration::from_millis(1),
        Duration::from_millis(752),
        Duration::from_millis(10_224),
    ));
    c.max_events = 200_000;
    let sum = s
        .sim_with(c)
        .and_then(Sim::run)
        .unwrap_or_else(|v| panic!("{v}"));
    assert!(!sum.truncated, "{sum:?}");
}

/// Fuzz finding (sim_faults): "the store still holds 1 KEYNOTIFY registrations after every
/// node stopped". A KEYNOTIFY got a 3.5 s tail delay; its request timed out and the lock's STOP
/// overtook it and was answered; the connection dropped 1.9 s after the send, and the world
/// held the KEYNOTIFY as unacknowledged, published it again at the reconnect 5.4 s later, and
/// it registered the client for good. The world counts Message Expiry from the send (as if the
/// broker had the message all along), so the KEYNOTIFY had expired at the broker before the
/// drop; and a request the broker never received cannot be overtaken by a later one of the
/// same TCP connection. A message that expired before its connection dropped is now lost, not
/// published again.
fn keynotify_published_again_after_its_expiry() -> Result<Summary, Box<Violation>> {
    let s: Scenario = "seed=10838471050879042874 workload=edit clients=3 lease_ms=1432 renew_ms=204 faults=0x000 run_secs=9"
        .parse()
        .map_err(|_| "scenario line")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut c = s.config();
    c.clocks.max_rate_ppm = 42;
    c.clocks.max_wall_skew = Duration::from_millis(4_501);
    let f = &mut c.faults;
    f.drop = 65.0 / 1024.0;
    f.duplicate = 227.0 / 1024.0;
    f.reorder = true;
    f.tail = 254.0 / 1024.0;
    f.tail_delay = Duration::from_millis(4_008);
    f.notification_loss = 104.0 * 4.0 / 1024.0;
    f.late_reply = 181.0 / 1024.0;
    f.disconnect = Some(Recurring::new(
        Duration::from_millis(15_103),
        Duration::from_millis(5_279),
        Duration::from_millis(5_534),
    ));
    c.max_events = 200_000;
    s.sim_with(c)?.run()
}

#[test]
fn a_request_expired_before_its_connection_dropped_is_not_published_again() {
    let sum = keynotify_published_again_after_its_expiry().unwrap_or_else(|v| panic!("{v}"));
    assert!(!sum.truncated, "{sum:?}");
    assert!(sum.checks.acquisitions >= 1, "{sum:?}");
}

/// Observes one key from the start; `unobserve_at_stop` says whether it stops observing when
/// the run ends (a correct agent) or leaves the registration behind (a leaky one).
struct Watcher {
    unobserve_at_stop: bool,
    pending: BTreeSet<RequestId>,
}

impl Agent for Watcher {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let key = Bytes::from_static(b"watched");
        if let Ok(id) = ctx.requester().observe(key, Default::default(), now) {
            self.pending.insert(id);
        }
    }

    fn handle_output(&mut self, output: &Output, _ctx: &mut Ctx<'_>) {
        if let Output::Completion(c) = output {
            self.pending.remove(&c.id);
        }
    }

    fn handle_timeout(&mut self, _ctx: &mut Ctx<'_>) {}

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        if self.unobserve_at_stop {
            let now = ctx.now();
            let key = Bytes::from_static(b"watched");
            if let Ok(id) = ctx.requester().unobserve(key, Default::default(), now) {
                self.pending.insert(id);
            }
        }
    }

    fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

struct Watchers {
    unobserve_at_stop: bool,
}

impl Workload for Watchers {
    fn agent(&mut self, _node: usize, _inc: u32, _seed: u64) -> Box<dyn Agent> {
        Box::new(Watcher {
            unobserve_at_stop: self.unobserve_at_stop,
            pending: BTreeSet::new(),
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

/// The leak check still catches a registration left behind by a node that stays connected
/// (stopped nodes do not disconnect, so the check sees what a long-lived process would leave).
#[test]
fn a_registration_left_behind_is_reported_as_a_leak() {
    let run = |unobserve_at_stop| {
        let mut config = SimConfig::new(5, 2, Duration::from_secs(2));
        // Messages that overtake, duplicates, tails and disconnects with the session kept.
        config.faults.duplicate = 0.1;
        config.faults.reorder = true;
        config.faults.tail = 0.2;
        config.faults.tail_delay = Duration::from_secs(2);
        config.faults.disconnect = Some(Recurring::new(
            Duration::from_millis(300),
            Duration::from_millis(100),
            Duration::from_millis(900),
        ));
        Sim::new(config, Watchers { unobserve_at_stop }).run()
    };
    run(true).unwrap_or_else(|v| panic!("{v}"));
    let v = run(false).expect_err("the registrations are left behind");
    assert_eq!(v.invariant, Invariant::Leak, "{v}");
    assert!(v.message.contains("KEYNOTIFY registrations"), "{v}");
}

/// Edits whose fenced writes time out and land late (lost and late replies, long tail delays,
/// reordering; no crash, so every node keeps its promises). With the lock released right after
/// such a write, the next holder read the counter, the late write landed, and the next
/// holder's increment overwrote it: the counter ended below the number of writes the store
/// applied. The edit now keeps the lock until the write can no longer land.
#[test]
fn edits_whose_writes_land_late_lose_no_update() {
    let mut failures = Vec::new();
    for seed in 0..24u64 {
        let s = Scenario {
            seed,
            workload: WorkloadKind::Edit,
            clients: 3,
            lease_ms: 1_500,
            renew_ms: 500,
            // Loss, reordering (with tail delays), late replies.
            faults: FaultMix::from_bits(0b1_0101),
            run_secs: 20,
        };
        if let Err(v) = s.run() {
            failures.push((alloc::format!("{s}"), v.invariant, v.message.clone()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Holders re-acquire by hand with varied durations, under loss, reordering and late replies,
/// so a shorter SET of theirs may apply with its outcome unknown. Each new grant is checked
/// against every holder's belief (S2). Before `safe_until` was capped by every SET that may
/// still land, the holder kept its old, longer `safe_until` past the shortened TTL.
#[test]
fn shorter_reacquires_never_outlive_the_store_ttl() {
    let mut failures = Vec::new();
    for seed in 0..24u64 {
        let s = Scenario {
            seed,
            workload: WorkloadKind::Reacquire,
            clients: 3,
            lease_ms: 2_000,
            renew_ms: 500,
            faults: FaultMix::from_bits(0b1_0101),
            run_secs: 20,
        };
        if let Err(v) = s.run() {
            failures.push((alloc::format!("{s}"), v.invariant, v.message.clone()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The kill policy the CLI had before SIGTERM moved a grace before the safe end: SIGTERM at
/// the safe end, SIGKILL a grace after it (and a grace after an early end, whatever the safe
/// end). Its commands outlive their holds.
const LATE_KILL: super::command::Policy = super::command::Policy {
    term_at: |safe_until, _grace| safe_until,
    kill_at: |safe_until, grace| safe_until + grace,
    kill_at_after_early_end: |_safe_until, grace, now| now + grace,
};

fn scenario_sim(seed: u64) -> Sim {
    let s = Scenario::from_seed(seed);
    s.sim_with(s.config()).unwrap_or_else(|v| panic!("{v}"))
}

/// Seeds whose scenario ([`Scenario::from_seed`]) lets a command stopped by [`LATE_KILL`] run
/// on after the store granted its lease to another client (found by running seeds 0–39: 19
/// of them fail so; the set moves whenever a change alters the runs' random draws).
const LATE_KILL_CAUGHT: [u64; 6] = [3, 4, 7, 13, 14, 17];

#[test]
fn a_late_kill_policy_breaks_s6() {
    for seed in LATE_KILL_CAUGHT {
        let v = scenario_sim(seed)
            .with_kill_policy(LATE_KILL)
            .run()
            .unwrap_err();
        assert_eq!(v.invariant, Invariant::S6CommandEnds, "{v}");
        assert_eq!(v.seed, seed);
        assert!(v.message.contains("command under it runs until"), "{v}");
    }
}

#[test]
fn the_supervisor_policy_keeps_s6() {
    for seed in (0..40).chain(LATE_KILL_CAUGHT) {
        let s = scenario_sim(seed).run().unwrap_or_else(|v| panic!("{v}"));
        assert!(s.checks.acquisitions > 0, "{s:?}");
    }
}
