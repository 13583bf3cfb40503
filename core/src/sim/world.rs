//! The world: nodes (a real [`Client`] plus an [`Agent`] each), one real [`Store`], the broker
//! and network between them, the faults, the event loop and the checkers.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use super::agent::{Agent, Ctx, CtxParts, Report, Workload};
use super::check::{fail, CheckStats, Checker, Failure, Invariant, Quiet, Who};
use super::clock::NodeClock;
use super::command::{Commands, Policy};
use super::config::{FaultConfig, Recurring};
use super::custom::Check;
use super::queue::{Due, EventQueue};
use super::script::ScriptedKind;
use super::trace::{Dir, Loss, Trace, TraceEntry, TraceKind};
use super::SimConfig;
use crate::client::{Client, ClientConfig, Output, RequestId};
use crate::envelope::{self, Message};
use crate::rng::Rng;
use crate::server::{Store, StoreConfig, StoreOutput};
use crate::supervise;
use crate::time::Instant;

/// A test hook that sees every request before the store runs it, and may rewrite it. Used to
/// build deliberately broken stores (one that forgets fencing, say) and show that the
/// checkers catch them.
pub trait StoreHook {
    /// Called for each request delivered to the store.
    fn on_request(&mut self, request: &mut Message, store: &Store);
}

/// Watches a run as it goes, for measurements (benchmarks, statistics); it cannot change
/// anything. Pass one to [`Sim::run_probed`](super::Sim::run_probed). Times are global (true)
/// time since the start of the run, so events of different nodes can be compared.
pub trait Probe {
    /// A request reached the store (after any [`StoreHook`]), from node `node`.
    fn on_store_request(&mut self, at: Duration, node: usize, request: &Message) {
        let _ = (at, node, request);
    }

    /// Node `node` reported something to the checkers (and the checkers accepted it).
    fn on_report(&mut self, at: Duration, node: usize, report: &Report) {
        let _ = (at, node, report);
    }
}

/// A run that broke an invariant: everything needed to understand and replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// The broken rule.
    pub invariant: Invariant,
    /// What exactly went wrong.
    pub message: String,
    /// Index of the event during which it was detected.
    pub event: u64,
    /// Global (true) time of detection.
    pub time: Duration,
    /// The last trace records, oldest first.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} violated at event #{} (t = {:?}), seed {}:\n  {}",
            self.invariant, self.event, self.time, self.seed, self.message
        )?;
        writeln!(f, "last {} events:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// What a run that kept every invariant did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The run's seed.
    pub seed: u64,
    /// Events processed: message deliveries, timer firings and fault transitions (every one
    /// did work; re-armed timers replace their earlier deadline instead of leaving one behind).
    pub events: u64,
    /// Hash of the whole trace: equal seeds and configurations give equal hashes.
    pub trace_hash: u64,
    /// Virtual time covered.
    pub virtual_time: Duration,
    /// Messages handed to the network (both directions, duplicates included).
    pub messages: u64,
    /// Requests the store handled.
    pub store_requests: u64,
    /// What the checkers saw.
    pub checks: CheckStats,
    /// Whether the run stopped at [`SimConfig::max_events`] before its end.
    pub truncated: bool,
    /// The retained trace records (all of them when the capacity allows).
    pub trace: Vec<TraceEntry>,
    /// Things that are not violations but suggest the run tested less than intended (no
    /// report at all, say). [`sweep`](super::sweep) prints them.
    pub warnings: Vec<String>,
}

#[derive(Debug)]
enum Ev {
    Connect {
        node: usize,
        inc: u32,
        session_present: bool,
    },
    SubAck {
        node: usize,
        inc: u32,
        epoch: u32,
        filter: String,
    },
    ToStore {
        node: usize,
        inc: u32,
        epoch: u32,
        session: u32,
        sent_at: u64,
        msg: Box<Message>,
    },
    ToClient {
        node: usize,
        inc: u32,
        session: u32,
        msg: Box<Message>,
    },
    Timer {
        node: usize,
    },
    StoreTimer,
    Partition {
        node: usize,
        to_store: bool,
        to_client: bool,
        len: u64,
        /// Scripted: happens after the heal too, and the heal does not end it.
        forced: bool,
    },
    PartitionEnd {
        node: usize,
        gen: u64,
    },
    Disconnect {
        node: usize,
        session_lost: bool,
        len: u64,
        forced: bool,
    },
    Pause {
        node: usize,
        len: u64,
    },
    Resume {
        node: usize,
    },
    Crash {
        node: usize,
        len: u64,
        forced: bool,
    },
    Restart {
        node: usize,
    },
    Heal,
    Progress,
    Stop,
    StopNode {
        node: usize,
    },
}

impl Ev {
    /// The node whose process handles this event (and so waits while it is paused).
    fn paused_node(&self) -> Option<usize> {
        match self {
            Ev::Connect { node, .. }
            | Ev::SubAck { node, .. }
            | Ev::ToClient { node, .. }
            | Ev::Timer { node, .. }
            | Ev::StopNode { node } => Some(*node),
            _ => None,
        }
    }
}

struct Node {
    id: String,
    clock: NodeClock,
    inc: u32,
    alive: bool,
    started: bool,
    client: Client,
    agent: Box<dyn Agent>,
    issued: BTreeSet<RequestId>,
    rng: Rng,
    connected: bool,
    epoch: u32,
    session: u32,
    session_kept: bool,
    /// Broker → client messages held in the session while disconnected.
    held: Vec<Message>,
    /// Client → broker messages to publish again after a reconnect with session.
    resend: Vec<Message>,
    /// When each connection dropped: `drops[e]` ended the connection of epoch `e`.
    drops: Vec<u64>,
    paused_until: u64,
    timer: Option<u64>,
    storm: (u64, u32),
    cut_to_store: bool,
    cut_to_client: bool,
    /// The current partition is scripted (the heal leaves it to its end).
    cut_forced: bool,
    partition_gen: u64,
    fifo_to_store: u64,
    fifo_to_client: u64,
    disturbed: Option<u64>,
}

/// Timer firings of one node at one instant beyond which its machines are spinning.
const TIMER_STORM: u32 = 1_000;

pub(crate) struct World<'p> {
    cfg: SimConfig,
    workload: Box<dyn Workload>,
    hook: Option<Box<dyn StoreHook>>,
    probe: Option<&'p mut dyn Probe>,
    store: Store,
    store_timer: Option<u64>,
    nodes: Vec<Node>,
    /// Node by client id, and each node's response topic (routing without comparing whole
    /// topics against every node's).
    by_id: BTreeMap<Bytes, usize>,
    response_topics: Vec<Bytes>,
    by_hex_id: BTreeMap<Bytes, usize>,
    lease_keys: Vec<Bytes>,
    /// Counter keys and the version of each last seen in the store.
    counters: Vec<(Bytes, Option<crate::hlc::Hlc>)>,
    /// The requests (response topic, correlation) that wrote a counter: a copy of one that the
    /// store runs again (a reconnect that kept the session published it again once its reply
    /// was no longer cached) is the same update, not another.
    counter_writers: BTreeSet<(Bytes, Bytes)>,
    queue: EventQueue<Ev>,
    rng: Rng,
    now: u64,
    event: u64,
    trace: Trace,
    checker: Checker,
    /// The command each holder runs under its lease (S6).
    commands: Commands,
    /// Reports of the agent being run, with the holder number each is made as.
    reports: Vec<(u32, Report)>,
    /// Reports accepted so far (none at all: a warning in the summary).
    reported: u64,
    /// A failure the agent being run declared ([`Ctx::fail`]).
    failed: Option<Failure>,
    /// The user's own invariants.
    checks: Vec<Box<dyn Check>>,
    faults_on: bool,
    stopping: bool,
    /// No event is left to process (the run ended, was truncated or failed).
    over: bool,
    truncated: bool,
    /// The invariant that broke: the run cannot go on.
    failed_run: Option<Box<Violation>>,
    heal_effective: u64,
    messages: u64,
    /// Boxes of delivered messages, refilled by the next ones sent: otherwise a box per
    /// message in flight is the simulator's own largest source of allocations.
    #[allow(clippy::vec_box)] // The boxes are what is reused.
    spare: Vec<Box<Message>>,
}

/// Spare message boxes kept at most.
const MAX_SPARE: usize = 1_024;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A derived seed, so each consumer of randomness has its own stream.
fn derive(seed: u64, salt: u64) -> u64 {
    Rng::new(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

impl<'p> World<'p> {
    pub(crate) fn new(
        cfg: SimConfig,
        mut workload: Box<dyn Workload>,
        hook: Option<Box<dyn StoreHook>>,
        probe: Option<&'p mut dyn Probe>,
        store_config: Option<StoreConfig>,
        kill_policy: Policy,
        extra_checks: Vec<Box<dyn Check>>,
    ) -> Result<World<'p>, String> {
        if let Some(x) = cfg.script.iter().find(|x| x.node >= cfg.clients) {
            return Err(format!(
                "scripted fault {x} names node {}, but the run has {} nodes (0..{})",
                x.node, cfg.clients, cfg.clients
            ));
        }
        let mut rng = Rng::new(cfg.seed);
        let mut store_config = store_config.unwrap_or_default();
        store_config.hash_seed = derive(cfg.seed, 1);
        let store = Store::new(store_config).map_err(|e| format!("store config: {e}"))?;
        let mut nodes = Vec::with_capacity(cfg.clients);
        let mut by_id = BTreeMap::new();
        let mut response_topics = Vec::with_capacity(cfg.clients);
        let mut by_hex_id = BTreeMap::new();
        for n in 0..cfg.clients {
            let id = format!("sim{n}");
            let ppm = i64::from(cfg.clocks.max_rate_ppm);
            let rate_ppm = i32::try_from(rng.below(2 * ppm as u64 + 1) as i64 - ppm).unwrap_or(0);
            let skew = i64::try_from(cfg.clocks.max_wall_skew.as_millis()).unwrap_or(0);
            let wall_skew_ms = rng.below(2 * skew as u64 + 1) as i64 - skew;
            let clock = NodeClock {
                offset_ns: rng.below(1 << 40),
                rate_ppm,
                wall_skew_ms,
            };
            let client = new_client(&cfg, &id, n, 0)?;
            let agent = workload.agent(n, 0, derive(cfg.seed, 1_000 + n as u64));
            by_id.insert(Bytes::copy_from_slice(id.as_bytes()), n);
            response_topics.push(Bytes::from(envelope::response_topic(&id)));
            by_hex_id.insert(Bytes::from(crate::hex::encode_upper(id.as_bytes())), n);
            nodes.push(Node {
                id,
                clock,
                inc: 0,
                alive: true,
                started: false,
                client,
                agent,
                issued: BTreeSet::new(),
                rng: Rng::new(derive(cfg.seed, 2_000 + n as u64)),
                connected: false,
                epoch: 0,
                session: 0,
                session_kept: false,
                held: Vec::new(),
                resend: Vec::new(),
                drops: Vec::new(),
                paused_until: 0,
                timer: None,
                storm: (0, 0),
                cut_to_store: false,
                cut_to_client: false,
                cut_forced: false,
                partition_gen: 0,
                fifo_to_store: 0,
                fifo_to_client: 0,
                disturbed: None,
            });
        }
        let lease_keys = workload.lease_keys();
        let mut checks = workload.checks();
        checks.extend(extra_checks);
        let counters = workload
            .counter_keys()
            .into_iter()
            .map(|k| (k, None))
            .collect();
        // One timer slot per node, and the store's after them.
        let slots = cfg.clients + 1;
        // The grace of the modelled commands: any that fits the workload's leases, from a
        // stream of its own (the rest of the run draws exactly what it drew without it).
        let grace = workload.lease_timing().map_or(Duration::ZERO, |t| {
            let margin = crate::lease::default_margin(t.lease);
            let bound = supervise::grace_bound(t.lease, margin, t.renew);
            Duration::from_nanos(Rng::new(derive(cfg.seed, 4)).below(nanos(bound).max(1)))
        });
        Ok(World {
            trace: Trace::new(cfg.trace_capacity),
            rng: Rng::new(derive(cfg.seed, 3)),
            cfg,
            workload,
            hook,
            probe,
            store,
            store_timer: None,
            nodes,
            by_id,
            response_topics,
            by_hex_id,
            lease_keys,
            counters,
            counter_writers: BTreeSet::new(),
            queue: EventQueue::new(slots),
            now: 0,
            event: 0,
            checker: Checker::default(),
            commands: Commands::new(kill_policy, grace),
            reports: Vec::new(),
            reported: 0,
            failed: None,
            checks,
            faults_on: true,
            stopping: false,
            over: false,
            truncated: false,
            failed_run: None,
            heal_effective: 0,
            messages: 0,
            spare: Vec::new(),
        })
    }

    /// `msg` in a box, reusing a spare one.
    fn boxed(&mut self, msg: Message) -> Box<Message> {
        match self.spare.pop() {
            Some(mut b) => {
                *b = msg;
                b
            }
            None => Box::new(msg),
        }
    }

    /// Keeps the box of a delivered or lost message for the next one (its contents go now).
    fn recycle(&mut self, mut b: Box<Message>) {
        if self.spare.len() < MAX_SPARE {
            *b = Message::default();
            self.spare.push(b);
        }
    }

    fn record(&mut self, node: Option<usize>, kind: TraceKind) {
        self.trace.record(self.event, self.now, node, kind);
    }

    fn violation(&self, f: Failure) -> Box<Violation> {
        Box::new(Violation {
            seed: self.cfg.seed,
            invariant: f.invariant,
            message: f.message,
            event: self.event,
            time: Duration::from_nanos(self.now),
            trace: self.trace.last_lines(self.cfg.report_lines),
        })
    }

    pub(crate) fn run(mut self) -> Result<Summary, Box<Violation>> {
        self.begin();
        while self.step()? {}
        self.finish()
    }

    /// Schedules the start of the nodes, the faults and the stop.
    pub(crate) fn begin(&mut self) {
        self.schedule_start();
    }

    /// Global time of the last event processed.
    pub(crate) fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// Events processed so far.
    pub(crate) fn events(&self) -> u64 {
        self.event
    }

    /// When the next event is due, if the run goes on.
    pub(crate) fn next_at(&self) -> Option<Duration> {
        if self.over {
            return None;
        }
        self.queue.peek_time().map(Duration::from_nanos)
    }

    /// The store as it is now.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// What the checkers saw so far.
    pub(crate) fn stats(&self) -> CheckStats {
        self.checker.stats
    }

    /// The last `n` trace lines.
    pub(crate) fn trace_lines(&self, n: usize) -> Vec<String> {
        self.trace.last_lines(n)
    }

    /// Processes one event; `false` once the run is over (the end-of-run checks are then
    /// [`World::finish`]'s).
    pub(crate) fn step(&mut self) -> Result<bool, Box<Violation>> {
        if self.over {
            return Ok(false);
        }
        let end = nanos(self.cfg.run_for.saturating_add(self.cfg.drain));
        let hard_end = end.saturating_add(nanos(self.cfg.settle));
        let Some((t, due)) = self.queue.pop_due() else {
            self.over = true;
            return Ok(false);
        };
        let ev = match due {
            Due::Event(ev) => ev,
            Due::Timer(slot) if slot < self.nodes.len() => Ev::Timer { node: slot },
            Due::Timer(_) => Ev::StoreTimer,
        };
        if t > end && (t > hard_end || self.settled()) {
            self.over = true;
            return Ok(false);
        }
        if self.event >= self.cfg.max_events {
            self.over = true;
            self.truncated = true;
            return Ok(false);
        }
        self.now = t;
        self.event += 1;
        if let Err(f) = self.dispatch(ev) {
            self.over = true;
            let v = self.violation(f);
            self.failed_run = Some(v.clone());
            return Err(v);
        }
        Ok(true)
    }

    /// What is suspicious about a run that kept every invariant.
    fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.reported == 0 {
            w.push(String::from("no agent reported anything (Ctx::report): the built-in checkers had nothing to check; a workload under test must report what it believes (Acquired, Released, Write...)"));
        }
        w
    }

    /// Runs what is left, then the end-of-run checks.
    pub(crate) fn finish(mut self) -> Result<Summary, Box<Violation>> {
        if let Some(v) = self.failed_run.take() {
            return Err(v);
        }
        while self.step()? {}
        let end = nanos(self.cfg.run_for.saturating_add(self.cfg.drain));
        if !self.truncated {
            self.now = self.now.max(end);
            if let Err(f) = self.final_checks() {
                return Err(self.violation(f));
            }
        }
        Ok(Summary {
            seed: self.cfg.seed,
            events: self.event,
            trace_hash: self.trace.hash(),
            virtual_time: Duration::from_nanos(self.now),
            messages: self.messages,
            store_requests: self.store.stats().requests,
            checks: self.checker.stats,
            truncated: self.truncated,
            trace: self.trace.entries().cloned().collect(),
            warnings: self.warnings(),
        })
    }

    fn schedule_start(&mut self) {
        for n in 0..self.nodes.len() {
            let at = self.rng.below(nanos(self.cfg.network.jitter).max(1));
            self.queue.push(
                at,
                Ev::Connect {
                    node: n,
                    inc: 0,
                    session_present: false,
                },
            );
        }
        let heal = nanos(self.cfg.heal_at.min(self.cfg.run_for));
        let faults = self.cfg.faults.clone();
        let mut latest = heal;
        let mut frng = Rng::new(derive(self.cfg.seed, 4));
        let classes: [(Option<Recurring>, u8); 4] = [
            (faults.partition, 0),
            (faults.disconnect, 1),
            (faults.pause, 2),
            (faults.crash, 3),
        ];
        for (rec, class) in classes {
            let Some(rec) = rec else { continue };
            let gap = nanos(rec.mean_gap).max(1);
            let mut t = frng.below(2 * gap);
            while t < heal {
                let node = frng.below(self.nodes.len() as u64) as usize;
                let (lo, hi) = (nanos(rec.min_len), nanos(rec.max_len));
                let len = lo + frng.below(hi.saturating_sub(lo).saturating_add(1));
                latest = latest.max(t.saturating_add(len));
                let ev = match class {
                    0 => {
                        let kind = frng.below(4);
                        Ev::Partition {
                            node,
                            to_store: kind != 1,
                            to_client: kind != 0,
                            len,
                            forced: false,
                        }
                    }
                    1 => Ev::Disconnect {
                        node,
                        session_lost: frng.unit_f64() < faults.session_loss,
                        len,
                        forced: false,
                    },
                    2 => Ev::Pause { node, len },
                    _ => Ev::Crash {
                        node,
                        len,
                        forced: false,
                    },
                };
                self.queue.push(t, ev);
                t = t.saturating_add(1 + frng.below(2 * gap));
            }
        }
        for x in self.cfg.script.clone() {
            let (at, len) = (nanos(x.at), nanos(x.len));
            latest = latest.max(at.saturating_add(len));
            let node = x.node;
            let ev = match x.kind {
                ScriptedKind::Pause => Ev::Pause { node, len },
                ScriptedKind::Crash => Ev::Crash {
                    node,
                    len,
                    forced: true,
                },
                ScriptedKind::Partition {
                    to_store,
                    to_client,
                } => Ev::Partition {
                    node,
                    to_store,
                    to_client,
                    len,
                    forced: true,
                },
                ScriptedKind::Disconnect { session_lost } => Ev::Disconnect {
                    node,
                    session_lost,
                    len,
                    forced: true,
                },
            };
            self.queue.push(at, ev);
        }
        // Partitions end at the heal; the rest end on their own. A message given a heavy-tail
        // delay just before the heal lands up to `tail_delay` later, and on a FIFO link every
        // later message waits behind it: the network heals only then.
        if faults.tail > 0.0 {
            let net = &self.cfg.network;
            let slowest = nanos(faults.tail_delay) + nanos(net.min_delay) + nanos(net.jitter);
            latest = latest.max(heal.saturating_add(slowest));
        }
        self.heal_effective = latest;
        self.queue.push(heal, Ev::Heal);
        if let Some(bound) = self.workload.liveness_bound() {
            let at = self.heal_effective.saturating_add(nanos(bound));
            if at < nanos(self.cfg.run_for) {
                self.queue.push(at, Ev::Progress);
            }
        }
        self.queue.push(nanos(self.cfg.run_for), Ev::Stop);
    }

    fn dispatch(&mut self, ev: Ev) -> Result<(), Failure> {
        if let Some(n) = ev.paused_node() {
            if let Some(node) = self.nodes.get(n) {
                if self.now < node.paused_until {
                    let until = node.paused_until;
                    if let Ev::Timer { .. } = ev {
                        self.nodes[n].timer = Some(until);
                        self.queue.set_timer(n, Some(until));
                    } else {
                        self.queue.push(until, ev);
                    }
                    return Ok(());
                }
            }
        }
        match ev {
            Ev::Connect {
                node,
                inc,
                session_present,
            } => self.connect(node, inc, session_present),
            Ev::SubAck {
                node,
                inc,
                epoch,
                filter,
            } => {
                let nd = &mut self.nodes[node];
                if nd.inc != inc || nd.epoch != epoch || !nd.connected || !nd.alive {
                    return Ok(());
                }
                let now = nd.clock.now(self.now);
                nd.client.handle_subscribed(&filter, true, now);
                self.record(Some(node), TraceKind::Subscribed);
                self.drain_node(node)?;
                self.reschedule(node)
            }
            Ev::ToStore {
                node,
                inc,
                epoch,
                session,
                sent_at,
                msg,
            } => self.arrive_at_store(node, inc, epoch, session, sent_at, msg),
            Ev::ToClient {
                node,
                inc,
                session,
                msg,
            } => self.arrive_at_client(node, inc, session, msg),
            Ev::Timer { node } => {
                if !self.nodes[node].alive {
                    return Ok(());
                }
                self.fire_timer(node)
            }
            Ev::StoreTimer => {
                self.store_timer = None;
                self.record(None, TraceKind::StoreTimer);
                let now = NodeClock::IDEAL.now(self.now);
                self.store.handle_timeout(now);
                self.drain_store()
            }
            Ev::Partition {
                node,
                to_store,
                to_client,
                len,
                forced,
            } => {
                if !self.faults_on && !forced {
                    return Ok(());
                }
                let nd = &mut self.nodes[node];
                nd.cut_to_store = to_store;
                nd.cut_to_client = to_client;
                nd.cut_forced = forced;
                nd.partition_gen += 1;
                let gen = nd.partition_gen;
                self.disturb(node);
                self.record(
                    Some(node),
                    TraceKind::PartitionStart {
                        to_store,
                        to_client,
                    },
                );
                self.queue
                    .push(self.now.saturating_add(len), Ev::PartitionEnd { node, gen });
                Ok(())
            }
            Ev::PartitionEnd { node, gen } => {
                let nd = &mut self.nodes[node];
                if nd.partition_gen == gen && (nd.cut_to_store || nd.cut_to_client) {
                    nd.cut_to_store = false;
                    nd.cut_to_client = false;
                    self.disturb(node);
                    self.record(Some(node), TraceKind::PartitionEnd);
                }
                Ok(())
            }
            Ev::Disconnect {
                node,
                session_lost,
                len,
                forced,
            } => self.disconnect(node, session_lost, len, forced),
            Ev::Pause { node, len } => {
                let nd = &mut self.nodes[node];
                if !nd.alive {
                    return Ok(());
                }
                let until = self.now.saturating_add(len);
                nd.paused_until = nd.paused_until.max(until);
                self.disturb(node);
                self.record(
                    Some(node),
                    TraceKind::Paused {
                        ms: len / 1_000_000,
                    },
                );
                self.queue.push(until, Ev::Resume { node });
                Ok(())
            }
            Ev::Resume { node } => {
                if self.now >= self.nodes[node].paused_until {
                    self.disturb(node);
                    self.record(Some(node), TraceKind::Resumed);
                }
                Ok(())
            }
            Ev::Crash { node, len, forced } => self.crash(node, len, forced),
            Ev::Restart { node } => self.restart(node),
            Ev::Heal => {
                self.faults_on = false;
                self.record(None, TraceKind::Healed);
                for n in 0..self.nodes.len() {
                    let nd = &mut self.nodes[n];
                    if (nd.cut_to_store || nd.cut_to_client) && !nd.cut_forced {
                        nd.cut_to_store = false;
                        nd.cut_to_client = false;
                        self.record(Some(n), TraceKind::PartitionEnd);
                    }
                }
                Ok(())
            }
            Ev::Progress => {
                for key in self.lease_keys.clone() {
                    self.checker.progress(&key, self.heal_effective, self.now)?;
                }
                Ok(())
            }
            Ev::Stop => {
                self.stopping = true;
                self.record(None, TraceKind::Stopping);
                for node in 0..self.nodes.len() {
                    self.queue.push(self.now, Ev::StopNode { node });
                }
                Ok(())
            }
            Ev::StopNode { node } => {
                let nd = &self.nodes[node];
                if !nd.alive || !nd.started {
                    return Ok(());
                }
                self.with_agent(node, |a, ctx| a.stop(ctx))?;
                self.reschedule(node)
            }
        }
    }

    fn disturb(&mut self, node: usize) {
        self.nodes[node].disturbed = Some(self.now);
    }

    fn connect(&mut self, node: usize, inc: u32, session_present: bool) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        if nd.inc != inc || !nd.alive || nd.connected {
            return Ok(());
        }
        nd.connected = true;
        let now = nd.clock.now(self.now);
        nd.client.handle_connected(session_present, now);
        self.record(Some(node), TraceKind::Connected { session_present });
        let nd = &mut self.nodes[node];
        let held = core::mem::take(&mut nd.held);
        let resend = core::mem::take(&mut nd.resend);
        for msg in held {
            let msg = self.boxed(msg);
            self.schedule_to_client(node, msg, false);
        }
        for msg in resend {
            let msg = self.boxed(msg);
            self.schedule_to_store(node, msg, self.now);
        }
        if !self.nodes[node].started && !self.stopping {
            self.nodes[node].started = true;
            self.record(Some(node), TraceKind::Start);
            self.with_agent(node, |a, ctx| a.start(ctx))?;
        }
        self.drain_node(node)?;
        self.reschedule(node)
    }

    fn disconnect(
        &mut self,
        node: usize,
        session_lost: bool,
        len: u64,
        forced: bool,
    ) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        if (!self.faults_on && !forced) || !nd.alive || !nd.connected {
            return Ok(());
        }
        nd.connected = false;
        nd.epoch += 1;
        nd.drops.push(self.now);
        nd.session_kept = !session_lost;
        if session_lost {
            nd.session += 1;
            nd.held.clear();
            nd.resend.clear();
        }
        let inc = nd.inc;
        let now = nd.clock.now(self.now);
        nd.client.handle_disconnected(now);
        let id = Bytes::copy_from_slice(nd.id.as_bytes());
        self.disturb(node);
        self.record(Some(node), TraceKind::Disconnected { session_lost });
        self.store.handle_client_disconnected(&id);
        self.drain_store()?;
        self.drain_node(node)?;
        self.reschedule(node)?;
        self.queue.push(
            self.now.saturating_add(len),
            Ev::Connect {
                node,
                inc,
                session_present: !session_lost,
            },
        );
        Ok(())
    }

    fn crash(&mut self, node: usize, len: u64, forced: bool) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        if (!self.faults_on && !forced) || !nd.alive {
            return Ok(());
        }
        // What the dying incarnation leaves in doubt still counts (an applied edit whose
        // reply never came is in the counter).
        let doubt = nd.agent.in_doubt_at_crash();
        if !doubt.is_empty() {
            self.reports.extend(doubt.into_iter().map(|r| (0, r)));
            self.take_reports(node)?;
        }
        self.workload.crashed(node, Duration::from_nanos(self.now));
        let nd = &mut self.nodes[node];
        nd.alive = false;
        nd.connected = false;
        nd.inc += 1;
        nd.epoch += 1;
        nd.drops.push(self.now);
        nd.session += 1;
        nd.held.clear();
        nd.resend.clear();
        nd.issued.clear();
        nd.timer = None;
        nd.paused_until = 0;
        nd.cut_to_store = false;
        nd.cut_to_client = false;
        let id = Bytes::copy_from_slice(nd.id.as_bytes());
        self.queue.set_timer(node, None);
        self.disturb(node);
        self.checker.crashed(node);
        self.commands.crashed(node, self.now);
        self.record(Some(node), TraceKind::Crashed);
        self.store.handle_client_disconnected(&id);
        self.drain_store()?;
        self.queue
            .push(self.now.saturating_add(len), Ev::Restart { node });
        Ok(())
    }

    fn restart(&mut self, node: usize) -> Result<(), Failure> {
        let inc = self.nodes[node].inc;
        let id = self.nodes[node].id.clone();
        let client = new_client(&self.cfg, &id, node, inc).map_err(|e| Failure {
            invariant: Invariant::Outcome,
            message: e,
        })?;
        let seed = derive(
            self.cfg.seed,
            (u64::from(inc) << 32) | (1_000 + node as u64),
        );
        let agent = self.workload.agent(node, inc, seed);
        let nd = &mut self.nodes[node];
        nd.client = client;
        nd.agent = agent;
        nd.alive = true;
        nd.started = false;
        nd.storm = (0, 0);
        self.disturb(node);
        let at = self.now + 1 + self.rng.below(nanos(self.cfg.network.jitter).max(1));
        self.queue.push(
            at,
            Ev::Connect {
                node,
                inc,
                session_present: false,
            },
        );
        Ok(())
    }

    fn fire_timer(&mut self, node: usize) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        nd.timer = None;
        if nd.storm.0 == self.now {
            nd.storm.1 += 1;
            if nd.storm.1 > TIMER_STORM {
                return fail(
                    Invariant::Leak,
                    format!("c{node}'s timer fired {TIMER_STORM} times at one instant: a deadline that never clears"),
                );
            }
        } else {
            nd.storm = (self.now, 1);
        }
        let now = nd.clock.now(self.now);
        nd.client.handle_timeout(now);
        self.record(Some(node), TraceKind::Timer);
        self.drain_node(node)?;
        if self.nodes[node].started {
            self.with_agent(node, |a, ctx| a.handle_timeout(ctx))?;
        }
        self.reschedule(node)
    }

    /// Arms the node's timer at its earliest deadline (client or agent).
    fn reschedule(&mut self, node: usize) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        if !nd.alive {
            return Ok(());
        }
        let agent = if nd.started {
            nd.agent.poll_timeout()
        } else {
            None
        };
        let deadline = match (nd.client.poll_timeout(), agent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = deadline else {
            if nd.timer.take().is_some() {
                self.queue.set_timer(node, None);
            }
            return Ok(());
        };
        let at = nd.clock.global_at(deadline).max(self.now);
        if nd.timer != Some(at) {
            nd.timer = Some(at);
            self.queue.set_timer(node, Some(at));
        }
        Ok(())
    }

    /// Runs `f` on the node's agent, then drains what it caused.
    fn with_agent(
        &mut self,
        node: usize,
        f: impl FnOnce(&mut dyn Agent, &mut Ctx<'_>),
    ) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        let now = nd.clock.now(self.now);
        {
            let mut ctx = Ctx::new(CtxParts {
                now,
                global: Duration::from_nanos(self.now),
                node,
                client: &mut nd.client,
                issued: &mut nd.issued,
                reports: &mut self.reports,
                failed: &mut self.failed,
                rng: &mut nd.rng,
            });
            f(nd.agent.as_mut(), &mut ctx);
        }
        self.take_reports(node)?;
        if let Some(f) = self.failed.take() {
            return Err(f);
        }
        self.drain_node(node)
    }

    fn take_reports(&mut self, node: usize) -> Result<(), Failure> {
        if self.reports.is_empty() {
            return Ok(());
        }
        let reports = core::mem::take(&mut self.reports);
        let clock = self.nodes[node].clock;
        let quiet = Quiet {
            last_disturbance: self.nodes[node].disturbed,
            window: self.workload.quiet_window().map(nanos),
        };
        let mut result = Ok(());
        for (holder, r) in &reports {
            let who = Who {
                node,
                holder: *holder,
            };
            let safe_until = match r {
                Report::Acquired { safe_until, .. }
                | Report::Renewed { safe_until, .. }
                | Report::SafeUntilLowered { safe_until, .. } => Some(clock.global_at(*safe_until)),
                _ => None,
            };
            if let (Report::Acquired { key, .. } | Report::Renewed { key, .. }, false) =
                (r, self.lease_keys.contains(r.key()))
            {
                result = fail(
                    Invariant::Setup,
                    format!("{who} reported holding {key:?}, which the workload does not declare in Workload::lease_keys() ({:?}): declare every lease key so the store's grants of it are recorded and checked", self.lease_keys),
                );
                break;
            }
            self.reported += 1;
            self.record(
                Some(node),
                TraceKind::Report(Box::new(global_safe_until(r, safe_until))),
            );
            result = self
                .checker
                .report(who, self.now, r, safe_until, &quiet)
                .and_then(|()| self.commands.report(who, self.now, clock, r));
            let at = Duration::from_nanos(self.now);
            for c in self.checks.iter_mut() {
                if result.is_err() {
                    break;
                }
                result = c.on_report(at, who, r).map_err(|message| Failure {
                    invariant: Invariant::Custom(c.name()),
                    message,
                });
            }
            if result.is_err() {
                break;
            }
            if let Some(probe) = self.probe.as_mut() {
                probe.on_report(Duration::from_nanos(self.now), node, r);
            }
        }
        let mut reports = reports;
        reports.clear();
        self.reports = reports;
        result
    }

    /// Carries out the node's client outputs until there are none.
    fn drain_node(&mut self, node: usize) -> Result<(), Failure> {
        loop {
            let nd = &mut self.nodes[node];
            if !nd.alive {
                return Ok(());
            }
            let Some(out) = nd.client.poll_output() else {
                return Ok(());
            };
            match out {
                Output::Publish(msg) => {
                    let msg = self.boxed(msg);
                    self.send_to_store(node, msg);
                }
                Output::Subscribe(filter) => {
                    let at = self
                        .now
                        .saturating_add(nanos(self.cfg.network.suback_delay));
                    let (inc, epoch) = (nd.inc, nd.epoch);
                    self.queue.push(
                        at,
                        Ev::SubAck {
                            node,
                            inc,
                            epoch,
                            filter,
                        },
                    );
                }
                Output::Unsubscribe(_) => {}
                other => {
                    if let Output::Completion(c) = &other {
                        if !nd.issued.remove(&c.id) {
                            return fail(
                                Invariant::Outcome,
                                format!("c{node} got a completion for request {} that is not outstanding (duplicate or never issued): {c:?}", c.id.0),
                            );
                        }
                        let (id, ok) = (c.id.0, c.result.is_ok());
                        self.record(Some(node), TraceKind::Completion { id, ok });
                    }
                    if self.nodes[node].started {
                        self.with_agent(node, |a, ctx| a.handle_output(&other, ctx))?;
                    }
                }
            }
        }
    }

    fn delay(&mut self, node: usize) -> u64 {
        let net = &self.cfg.network;
        let base = nanos(net.min_delay) + self.rng.below(nanos(net.jitter).max(1));
        let p = self.cfg.faults.tail;
        if self.chance(p) {
            self.disturb(node);
            base + self.rng.below(nanos(self.cfg.faults.tail_delay).max(1))
        } else {
            base
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.faults_on && self.rng.unit_f64() < p
    }

    fn faults(&self) -> &FaultConfig {
        &self.cfg.faults
    }

    fn send_to_store(&mut self, node: usize, msg: Box<Message>) {
        if !self.nodes[node].connected {
            self.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToStore,
                    why: Loss::NotConnected,
                },
            );
            return;
        }
        if self.faults_on && self.nodes[node].cut_to_store {
            self.disturb(node);
            self.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToStore,
                    why: Loss::Partitioned,
                },
            );
            return;
        }
        let p = self.faults().drop;
        if self.chance(p) {
            self.disturb(node);
            self.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToStore,
                    why: Loss::Dropped,
                },
            );
            return;
        }
        let p = self.faults().duplicate;
        if self.chance(p) {
            self.disturb(node);
            let copy = msg.clone();
            self.schedule_to_store(node, copy, self.now);
        }
        self.schedule_to_store(node, msg, self.now);
    }

    fn schedule_to_store(&mut self, node: usize, msg: Box<Message>, sent_at: u64) {
        let mut at = self.now.saturating_add(self.delay(node));
        let reorder = self.faults_on && self.cfg.faults.reorder;
        let nd = &mut self.nodes[node];
        if self.cfg.network.fifo && !reorder {
            at = at.max(nd.fifo_to_store);
            nd.fifo_to_store = at;
        }
        let (inc, epoch, session) = (nd.inc, nd.epoch, nd.session);
        self.messages += 1;
        self.trace.record_sent(
            self.event,
            self.now,
            node,
            Dir::ToStore,
            &msg.payload,
            corr(&msg),
            (at - self.now) / 1_000,
            false,
        );
        self.queue.push(
            at,
            Ev::ToStore {
                node,
                inc,
                epoch,
                session,
                sent_at,
                msg,
            },
        );
    }

    fn arrive_at_store(
        &mut self,
        node: usize,
        inc: u32,
        epoch: u32,
        session: u32,
        sent_at: u64,
        mut msg: Box<Message>,
    ) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        let lost = |w: &mut World<'_>, why| {
            w.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToStore,
                    why,
                },
            );
            Ok(())
        };
        let orphaned = nd.inc != inc;
        if orphaned {
            // From a crashed incarnation: it reaches the broker only if it was on the wire
            // before the node came back (a new connection's messages come after it).
            if nd.alive {
                return lost(self, Loss::Crashed);
            }
        } else if nd.epoch != epoch {
            if nd.session != session {
                // The connection dropped and the session with it: the broker may or may not
                // have taken the message before the drop.
                if self.rng.below(2) == 0 {
                    return lost(self, Loss::NoSession);
                }
            } else if !nd.connected {
                // Message Expiry runs from the send here, as if the broker had the message from
                // then on (that is how a late request expires), so one that expired before its
                // connection dropped was gone by then and is not published again. Holding it
                // back instead would make it a copy the broker never received yet later
                // requests of the same connection overtook, which in-order TCP rules out.
                let dropped_at = usize::try_from(epoch)
                    .ok()
                    .and_then(|e| nd.drops.get(e))
                    .copied()
                    .unwrap_or(self.now);
                if dropped_at.saturating_sub(sent_at) <= expiry(&msg) {
                    // Unacknowledged: the client publishes it again after reconnecting.
                    nd.resend.push(*msg);
                    return Ok(());
                }
            }
        }
        if self.now.saturating_sub(sent_at) > expiry(&msg) {
            return lost(self, Loss::Expired);
        }
        self.record(
            Some(node),
            TraceKind::Delivered {
                dir: Dir::ToStore,
                corr: corr(&msg),
            },
        );
        if let Some(hook) = self.hook.as_mut() {
            hook.on_request(&mut msg, &self.store);
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.on_store_request(Duration::from_nanos(self.now), node, &msg);
        }
        let now = NodeClock::IDEAL.now(self.now);
        self.store.handle_request(&msg, now);
        self.recycle(msg);
        if orphaned {
            // Sent by a crashed incarnation and still delivered: its connection is gone, and
            // the store keeps no registration for a client that is not connected (docs/protocol.md
            // §9.1).
            let id = Bytes::copy_from_slice(self.nodes[node].id.as_bytes());
            self.store.handle_client_disconnected(&id);
        }
        self.drain_store()
    }

    /// Routes the store's outputs and re-arms its timer.
    fn drain_store(&mut self) -> Result<(), Failure> {
        let mut granted = false;
        let mut replied = Vec::new();
        while let Some(out) = self.store.poll_output() {
            let StoreOutput::Publish(msg) = out else {
                continue;
            };
            if msg.payload.as_ref() == b"+OK\r\n" {
                granted = true;
            }
            if let Some(correlation) = &msg.correlation_data {
                if self.response_topics.contains(&msg.topic) {
                    replied.push((msg.topic.clone(), correlation.clone()));
                }
            }
            self.send_to_client(msg);
        }
        // A request runs at most one write: a new version of a counter is one applied write,
        // unless the request that made it had written before (the same update run again).
        for (key, seen) in &mut self.counters {
            let version = self.store.get(key).map(|i| i.version);
            if version.is_some() && version != *seen {
                let again =
                    !replied.is_empty() && replied.iter().all(|r| self.counter_writers.contains(r));
                if !again {
                    self.checker.counter_written(key);
                    self.counter_writers.extend(replied.iter().cloned());
                }
            }
            *seen = version;
        }
        if granted {
            for key in &self.lease_keys {
                if let Some(info) = self.store.get(key) {
                    let expiry = info.expires_at.map_or(u64::MAX, Instant::as_nanos);
                    if self.checker.grant(key, &info.version, expiry, self.now)? {
                        let owner = self.holder_who(&info.value);
                        self.commands.granted(key, owner, self.now)?;
                    }
                }
            }
        }
        match self.store.poll_timeout() {
            None => {
                if self.store_timer.take().is_some() {
                    self.queue.set_timer(self.nodes.len(), None);
                }
            }
            Some(deadline) => {
                let lateness = nanos(self.cfg.faults.expiry_lateness);
                let late = if self.faults_on && lateness > 0 {
                    self.rng.below(lateness)
                } else {
                    0
                };
                let due = deadline.as_nanos();
                if self.store_timer.is_none_or(|t| t > due) {
                    let at = due.saturating_add(late).max(self.now);
                    self.store_timer = Some(due);
                    self.queue.set_timer(self.nodes.len(), Some(at));
                }
            }
        }
        Ok(())
    }

    /// The node a lease's holder value names (`clientId` or `clientId:sessionId`).
    /// The reporter a holder value stands for: `clientId` or `clientId:<session>` is the
    /// node's only holder, `clientId:h<n>` its holder `n`.
    fn holder_who(&self, holder: &[u8]) -> Option<Who> {
        let mut parts = holder.splitn(2, |b| *b == b':');
        let id = parts.next().unwrap_or(holder);
        let node = *self.by_id.get(id)?;
        let holder = parts
            .next()
            .and_then(|s| s.strip_prefix(b"h"))
            .and_then(|n| core::str::from_utf8(n).ok()?.parse::<u32>().ok())
            .unwrap_or(0);
        Some(Who { node, holder })
    }

    fn route(&self, topic: &[u8]) -> Option<(usize, bool)> {
        let notify = topic
            .strip_prefix(envelope::NOTIFY_TOPIC_PREFIX.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"/"))
            .and_then(|rest| rest.get(..rest.iter().position(|b| *b == b'/')?))
            .and_then(|hex| self.by_hex_id.get(hex));
        if let Some(n) = notify {
            return Some((*n, true));
        }
        let rest = topic.strip_prefix(b"clients/")?;
        let id = rest.get(..rest.iter().position(|b| *b == b'/')?)?;
        let n = *self.by_id.get(id)?;
        (self.response_topics.get(n)?.as_ref() == topic).then_some((n, false))
    }

    fn send_to_client(&mut self, msg: Message) {
        let Some((node, notification)) = self.route(&msg.topic) else {
            self.record(
                None,
                TraceKind::Lost {
                    dir: Dir::ToClient,
                    why: Loss::UnknownTopic,
                },
            );
            return;
        };
        let lost = |w: &mut World<'_>, why| {
            w.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToClient,
                    why,
                },
            )
        };
        let nd = &self.nodes[node];
        if !nd.alive {
            return lost(self, Loss::Crashed);
        }
        if !nd.connected && !nd.session_kept {
            return lost(self, Loss::NoSession);
        }
        if notification {
            let p = self.faults().notification_loss;
            if self.chance(p) {
                self.disturb(node);
                return lost(self, Loss::NotificationLost);
            }
        }
        if self.faults_on && self.nodes[node].cut_to_client {
            self.disturb(node);
            return lost(self, Loss::Partitioned);
        }
        let p = self.faults().drop;
        if self.chance(p) {
            self.disturb(node);
            return lost(self, Loss::Dropped);
        }
        let mut extra = 0;
        let p = self.faults().late_reply;
        if !notification && self.chance(p) {
            self.disturb(node);
            let secs = u64::from(msg.message_expiry_secs.unwrap_or(1));
            extra = secs * 1_000_000_000 + self.rng.below(secs * 1_000_000_000);
        }
        let msg = self.boxed(msg);
        let p = self.faults().duplicate;
        if self.chance(p) {
            self.disturb(node);
            self.schedule_to_client_after(node, msg.clone(), true, extra);
        }
        self.schedule_to_client_after(node, msg, false, extra);
    }

    fn schedule_to_client(&mut self, node: usize, msg: Box<Message>, duplicate: bool) {
        self.schedule_to_client_after(node, msg, duplicate, 0);
    }

    fn schedule_to_client_after(
        &mut self,
        node: usize,
        msg: Box<Message>,
        duplicate: bool,
        extra: u64,
    ) {
        let mut at = self
            .now
            .saturating_add(self.delay(node))
            .saturating_add(extra);
        let reorder = self.faults_on && self.cfg.faults.reorder;
        let nd = &mut self.nodes[node];
        if self.cfg.network.fifo && !reorder && extra == 0 {
            at = at.max(nd.fifo_to_client);
            nd.fifo_to_client = at;
        }
        let (inc, session) = (nd.inc, nd.session);
        self.messages += 1;
        self.trace.record_sent(
            self.event,
            self.now,
            node,
            Dir::ToClient,
            &msg.payload,
            corr(&msg),
            (at - self.now) / 1_000,
            duplicate,
        );
        self.queue.push(
            at,
            Ev::ToClient {
                node,
                inc,
                session,
                msg,
            },
        );
    }

    fn arrive_at_client(
        &mut self,
        node: usize,
        inc: u32,
        session: u32,
        mut msg: Box<Message>,
    ) -> Result<(), Failure> {
        let nd = &mut self.nodes[node];
        let why = if nd.inc != inc || !nd.alive {
            Some(Loss::Crashed)
        } else if nd.session != session {
            Some(Loss::NoSession)
        } else {
            None
        };
        if let Some(why) = why {
            self.record(
                Some(node),
                TraceKind::Lost {
                    dir: Dir::ToClient,
                    why,
                },
            );
            return Ok(());
        }
        if !nd.connected {
            // The broker keeps it in the session until the client is back.
            nd.held.push(*msg);
            return Ok(());
        }
        let now = nd.clock.now(self.now);
        let c = corr(&msg);
        nd.client.handle_publish(core::mem::take(&mut *msg), now);
        self.recycle(msg);
        self.record(
            Some(node),
            TraceKind::Delivered {
                dir: Dir::ToClient,
                corr: c,
            },
        );
        self.drain_node(node)?;
        self.reschedule(node)
    }

    /// Whether every live node is at rest: connected, nothing in flight, no agent timer. Past
    /// the drain the world runs on (up to [`SimConfig::settle`]) until this holds, so bounded
    /// clean-up that a late reconnect starts is finished before the leak checks.
    fn settled(&self) -> bool {
        self.nodes.iter().all(|nd| {
            !nd.alive
                || (nd.connected
                    && nd.issued.is_empty()
                    && nd.client.in_flight() == 0
                    && (!nd.started
                        || (nd.agent.outstanding() == 0 && nd.agent.poll_timeout().is_none())))
        })
    }

    fn final_checks(&mut self) -> Result<(), Failure> {
        for (n, nd) in self.nodes.iter().enumerate() {
            if !nd.alive {
                continue;
            }
            if let Some(id) = nd.issued.first() {
                return fail(
                    Invariant::Outcome,
                    format!(
                        "c{n}: request {} never completed ({} without an outcome)",
                        id.0,
                        nd.issued.len()
                    ),
                );
            }
            if nd.client.in_flight() != 0 {
                return fail(
                    Invariant::Leak,
                    format!(
                        "c{n}: the client still has {} requests in flight after the drain",
                        nd.client.in_flight()
                    ),
                );
            }
            if nd.started {
                if nd.agent.outstanding() != 0 {
                    return fail(
                        Invariant::Leak,
                        format!(
                            "c{n}: the agent still awaits {} answers after the drain",
                            nd.agent.outstanding()
                        ),
                    );
                }
                if let Some(t) = nd.agent.poll_timeout() {
                    return fail(
                        Invariant::Leak,
                        format!(
                            "c{n}: the agent still has a timer armed (at {t:?}) after stopping"
                        ),
                    );
                }
            }
        }
        if self.store.registration_count() != 0 {
            // Name them: which node left which key registered.
            let left: Vec<String> = self
                .by_id
                .iter()
                .flat_map(|(id, n)| {
                    let keys = self.store.registrations_of(id);
                    keys.into_iter().map(move |k| format!("c{n} on {k:?}"))
                })
                .collect();
            return fail(
                Invariant::Leak,
                format!(
                    "the store still holds {} KEYNOTIFY registrations after every node stopped: {}",
                    self.store.registration_count(),
                    left.join(", ")
                ),
            );
        }
        let store = &self.store;
        self.checker.counters(|key| {
            let info = store.get(key)?;
            core::str::from_utf8(&info.value).ok()?.parse().ok()
        })?;
        let at = Duration::from_nanos(self.now);
        for c in self.checks.iter_mut() {
            c.at_end(at, &self.store).map_err(|message| Failure {
                invariant: Invariant::Custom(c.name()),
                message,
            })?;
        }
        Ok(())
    }
}

/// `r` as the trace keeps it: its `safe_until` (when it has one) converted to global time,
/// `safe_until_g`, so it compares with the trace's times.
fn global_safe_until(r: &Report, safe_until_g: Option<u64>) -> Report {
    let mut r = r.clone();
    if let (
        Report::Acquired { safe_until, .. }
        | Report::Renewed { safe_until, .. }
        | Report::SafeUntilLowered { safe_until, .. },
        Some(g),
    ) = (&mut r, safe_until_g)
    {
        *safe_until = Instant::from_nanos(g);
    }
    r
}

/// A message's Message Expiry in nanoseconds (none: forever).
fn expiry(msg: &Message) -> u64 {
    msg.message_expiry_secs
        .map_or(u64::MAX, |s| u64::from(s) * 1_000_000_000)
}

fn corr(msg: &Message) -> u32 {
    let Some(c) = msg.correlation_data.as_ref() else {
        return 0;
    };
    let mut b = [0u8; 4];
    for (d, s) in b.iter_mut().zip(c.iter()) {
        *d = *s;
    }
    u32::from_be_bytes(b)
}

fn new_client(cfg: &SimConfig, id: &str, node: usize, inc: u32) -> Result<Client, String> {
    Client::new(ClientConfig {
        client_id: String::from(id),
        seed: derive(cfg.seed, (u64::from(inc) << 32) | (5_000 + node as u64)),
        max_in_flight: cfg.max_in_flight,
        max_observed: 16,
        default_timeout: cfg.request_timeout,
        max_drift_ms: crate::hlc::DEFAULT_MAX_DRIFT_MS,
        hlc_node: format!("node{node}-{inc}"),
    })
    .map_err(|e| format!("client config for {id}: {e:?}"))
}
