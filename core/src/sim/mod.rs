//! A deterministic simulator for exploring races (feature `sim`).
//!
//! The reason the core is sans-IO: N real [`Client`](crate::client::Client) machines, each with
//! the code under test on top (an [`Agent`]: typically built on the lease, lock, edit or leader
//! machines), talk through a faulty broker to one real [`Store`](crate::server::Store), all in
//! one thread, in virtual time, with every random choice drawn from one seed. A run that breaks
//! an invariant stops with a [`Violation`]: the seed, the event index and the last events; the
//! same seed replays it exactly.
//!
//! What the world models:
//! - virtual time: an event queue ordered by (time, sequence), so simultaneous events keep the
//!   order in which they were scheduled;
//! - clocks: each node has its own monotonic origin and rate error and its own wall-clock skew
//!   ([`ClockConfig`]); the store's clock is true time;
//! - the broker: a request goes to the store, a reply to the client named by its response
//!   topic, a notification to the client whose hex id is in its topic. A disconnected client
//!   gets nothing; with its session kept the broker holds messages for it and the client
//!   publishes its unacknowledged requests again after reconnecting (those not yet expired
//!   when the connection dropped); Message Expiry is honoured, counted from the send;
//! - faults ([`FaultConfig`], [`FaultMix`]): delay and jitter, loss, duplication, reordering,
//!   one-way and two-way partitions, lost notifications, disconnects with and without a lost
//!   session, pauses longer than the lease, crash and restart with the same client id, late
//!   store expiry and replies that arrive after the request timed out. Faults stop at
//!   [`SimConfig::heal_at`].
//!
//! What the checkers verify, on every event (docs/architecture.md §7): S1 one holder at a time, S2
//! every `safe_until` within the store's expiry of that grant, S3 fenced writes in token order and
//! no holder refused, S4 event order, L1 progress after healing, L2 an undisturbed auto-renewed
//! lease is never lost, S6 the command each holder runs under its lease (stopped by the CLI
//! supervisor's policy, [`crate::supervise`]) has ended whenever the lease is granted to another
//! client, exactly one outcome per request, and nothing left over (requests, timers,
//! registrations) once the run drains; plus, for edit workloads, a shared counter that ends equal
//! to the number of committed edits. See [`Invariant`].
//!
//! # Guide
//!
//! ## Build a world and run it
//!
//! A [`SimConfig`] says everything about a run except the code under test: the seed, the
//! number of nodes, how long the workload runs ([`SimConfig::run_for`]), when faults stop
//! ([`SimConfig::heal_at`]), the network, the node clocks and the faults. [`Sim::new`] pairs it
//! with a [`Workload`]; [`Sim::run`] returns a [`Summary`] or the first [`Violation`].
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use leasedlock_core::sim::{FaultMix, Sim, SimConfig};
//! use leasedlock_core::sim::workload::{LeaseContention, Timing};
//!
//! let timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
//! let run = Duration::from_secs(20);
//! let mut config = SimConfig::new(7, 4, run); // seed 7, 4 nodes
//! config.request_timeout = timing.timeout;
//! // Switch faults on by class; FaultMix::config turns the switches into probabilities and
//! // durations scaled to the lease.
//! let faults = FaultMix { drop: true, pause: true, crash: true, ..FaultMix::NONE };
//! config.faults = faults.config(timing.lease, config.clients, run);
//!
//! let workload = LeaseContention::new(Bytes::from_static(b"lease"), timing).unwrap();
//! let summary = Sim::new(config, workload).run().unwrap_or_else(|v| panic!("{v}"));
//! assert!(summary.checks.acquisitions > 0);
//! ```
//!
//! ## Test your own code
//!
//! The shortest way: write the code under test as an async worker on a [`Node`] (the node's
//! connection: [`Node::lock`], [`Node::get`], [`Node::set`], [`Node::request`],
//! [`Node::sleep`]...) and run it as an [`AsyncWorkload`] on a deterministic executor over the
//! node's client host. Its locks report to the checkers by themselves; add invariants of your
//! own with a [`Check`] ([`check_fn`]) or [`Node::fail`]. `docs/simulation.md` in the
//! repository walks through a complete race test (48 lines, tested in CI).
//!
//! ```
//! use std::time::Duration;
//! use leasedlock_core::sim::{workload::Timing, AsyncWorkload, FaultMix, Node, Sim, SimConfig};
//!
//! async fn worker(node: Node) {
//!     loop {
//!         if let Ok(lock) = node.lock("lock", Duration::from_secs(2)).await {
//!             if lock.is_safe() {
//!                 let _ = node.set("data", "mine", Some(lock.token())).await;
//!             }
//!             lock.unlock().await;
//!         }
//!         node.sleep_random(Duration::from_secs(1)).await;
//!     }
//! }
//!
//! let timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
//! let config = SimConfig::new(7, 3, Duration::from_secs(20))
//!     .with_faults(FaultMix::PAUSE | FaultMix::DROP, timing.lease);
//! let workload = AsyncWorkload::new(timing, worker).leases(["lock"]);
//! let summary = Sim::new(config, workload).run().unwrap_or_else(|v| panic!("{v}"));
//! assert!(summary.checks.acquisitions > 0);
//! ```
//!
//! Closer to the machines: implement [`Agent`] for your code: the world hands it exactly what
//! an adapter would (every client output except publishes and subscriptions, its own timer, a
//! start and a stop) and a [`Ctx`] with the node's clock, [`Ctx::global_now`], its
//! [`TrackedRequester`] (pass it to the machines), its seeded generator and [`Ctx::fail`].
//! Tell the checkers what your code believes with [`Ctx::report`]: every [`Report::Acquired`],
//! [`Report::Renewed`], [`Report::Lost`] and [`Report::Released`] of a lease, and the outcome
//! of every fenced write ([`Report::Write`]). Then implement [`Workload`]: one agent per node
//! (and a fresh one after each crash), the lease keys to follow, the liveness settings, and
//! optionally [`Workload::checks`] and [`Workload::crashed`]. A [`HostWorker`] run by a
//! [`HostAgent`] sits in between: it drives the client host and gets its outputs (answers,
//! statuses, replies). `tests/sim/tests/user_example.rs` in the repository is a complete
//! agent example. Ready-made workloads on the library's own machines live in [`workload`];
//! their [`workload::Tamper`] hooks break a machine from the outside.
//!
//! ## Switch faults
//!
//! [`FaultMix`] has one switch per fault class (also as ten bits, for proptest and replay
//! lines); [`FaultMix::config`] turns it into a [`FaultConfig`] scaled to the lease duration.
//! Set [`FaultConfig`] fields directly for finer control (a probability of zero or `None`
//! turns a fault off). [`NetworkConfig`] sets the delay distribution and FIFO delivery;
//! [`ClockConfig`] the clock rate error and wall-clock skew. A [`StoreHook`] rewrites requests
//! before the store sees them (a deliberately broken store).
//!
//! ## Scripted faults and stepping
//!
//! [`SimConfig::with_script`] adds faults at chosen times on chosen nodes ([`Scripted`]:
//! "pause node 0 at 12 s for 3 s", "partition nodes 1 and 2 from 20 s to 25 s").
//! [`Sim::start`] returns a [`Running`] run to step ([`Running::step`],
//! [`Running::run_until`]) and look at between events.
//!
//! ## Replay a seed
//!
//! A run is a function of its configuration: the same [`SimConfig`] and workload give the
//! same [`Summary::trace_hash`]. A [`Violation`] prints its seed, the event index and the last
//! [`SimConfig::report_lines`] trace lines; set [`SimConfig::trace_capacity`] to `usize::MAX`
//! to keep every record. For the ready-made workloads a [`Scenario`] is the whole run in one
//! printable line: [`Scenario::from_seed`] derives one from a seed and [`Sim::replay`] /
//! [`Sim::replay_scenario`] rerun it with its full trace. For any workload, a [`SimConfig`]
//! prints as one line and parses back; [`sweep`] runs seeds until a violation and prints
//! `LEASEDLOCK_REPLAY="<line>"`, which [`env`](mod@env) reads back (with `LEASEDLOCK_SEED` and
//! `LEASEDLOCK_SCENARIO`). In the repository's race tests:
//!
//! ```text
//! LEASEDLOCK_SEED=42 cargo test -p leasedlock-sim-tests --test races replay -- --nocapture
//! ```
//!
//! ```
//! use leasedlock_core::sim::Sim;
//!
//! let replay = Sim::replay(42);
//! println!("{}", replay.scenario); // seed=42 workload=.. clients=.. faults=0x...
//! for line in replay.trace.iter().take(3) {
//!     println!("{line}"); // #event  time  node  what happened
//! }
//! ```
//!
//! ## Measure
//!
//! [`Sim::run_probed`] reports every store request and every report, with global time, to a
//! [`Probe`]; the `sim_bench` example uses one to measure lock handovers
//! (`cargo run --release -p leasedlock-core --features sim --example sim_bench`).

mod agent;
mod check;
mod clock;
mod command;
mod config;
mod config_line;
mod custom;
pub mod env;
mod host_agent;
mod queue;
mod scenario;
mod script;
mod sweep;
mod task;
mod trace;
pub mod workload;
mod world;

#[cfg(test)]
mod extension_tests;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use core::time::Duration;

pub use agent::{Agent, Ctx, Report, TrackedRequester, Workload, WriteOutcome};
pub use check::{CheckStats, Invariant, Who};
pub use clock::{NodeClock, BASE_WALL_MS};
pub use config::{ClockConfig, FaultConfig, FaultMix, NetworkConfig, Recurring};
pub use config_line::ConfigParseError;
pub use custom::{check_fn, Check, CheckFn};
pub use host_agent::{host_agent, HostAgent, HostIo, HostWorker};
pub use scenario::{Replay, Scenario, ScenarioParseError, WorkloadKind};
pub use script::{ScriptParseError, Scripted, ScriptedKind};
pub use sweep::{sweep, SweepFailure, SweepReport};
pub use task::{AsyncWorkload, Held, Node};
pub use trace::{Dir, Loss, PayloadPrefix, TraceEntry, TraceKind, PAYLOAD_PREFIX};
pub use world::{Probe, StoreHook, Summary, Violation};

use crate::server::StoreConfig;

/// Everything about a run except the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed: every random choice derives from it.
    pub seed: u64,
    /// Number of client nodes.
    pub clients: usize,
    /// How long the workload runs (virtual time) before it is asked to stop.
    pub run_for: Duration,
    /// Faults stop here (partitions end; pauses, disconnects and crashes already started run
    /// their course).
    pub heal_at: Duration,
    /// Time after the stop for everything to settle before the leak checks.
    pub drain: Duration,
    /// How much longer than [`SimConfig::drain`] the world keeps running while a live node
    /// is still unsettled (disconnected, a request in flight, an agent timer armed): a fault
    /// started before healing may outlast the drain, and the clean-up it leaves behind (the
    /// lease's sweep STOP after a reconnect) is bounded but runs only afterwards. A timer
    /// still armed after this is a leak.
    pub settle: Duration,
    /// The network.
    pub network: NetworkConfig,
    /// Node clocks.
    pub clocks: ClockConfig,
    /// Faults.
    pub faults: FaultConfig,
    /// Clients' default request timeout.
    pub request_timeout: Duration,
    /// Clients' in-flight table size.
    pub max_in_flight: usize,
    /// The run stops (without the end-of-run checks) after this many events.
    pub max_events: u64,
    /// Trace records kept in the ring (`usize::MAX` keeps all of them).
    pub trace_capacity: usize,
    /// Trace lines included in a [`Violation`].
    pub report_lines: usize,
    /// Faults at chosen times on chosen nodes ([`Scripted`]), on top of the random ones.
    pub script: alloc::vec::Vec<Scripted>,
}

impl SimConfig {
    /// A fault-free configuration of `clients` nodes running for `run_for`.
    pub fn new(seed: u64, clients: usize, run_for: Duration) -> SimConfig {
        SimConfig {
            seed,
            clients,
            run_for,
            heal_at: run_for / 2,
            drain: Duration::from_secs(30),
            settle: Duration::from_secs(60),
            network: NetworkConfig::default(),
            clocks: ClockConfig::default(),
            faults: FaultConfig::default(),
            request_timeout: Duration::from_secs(2),
            max_in_flight: 16,
            max_events: 50_000_000,
            trace_capacity: 256,
            report_lines: 64,
            script: alloc::vec::Vec::new(),
        }
    }

    /// Sets the random faults from `mix`, scaled to leases of `lease` over this run's nodes
    /// and length ([`FaultMix::config`]).
    pub fn with_faults(mut self, mix: FaultMix, lease: Duration) -> SimConfig {
        self.faults = mix.config(lease, self.clients, self.run_for);
        self
    }

    /// Adds scripted faults: `config.with_script([Scripted::pause(0, secs(12), secs(3))])`.
    pub fn with_script(mut self, faults: impl IntoIterator<Item = Scripted>) -> SimConfig {
        self.script.extend(faults);
        self
    }
}

/// A simulation ready to run.
pub struct Sim {
    config: SimConfig,
    workload: Box<dyn Workload>,
    hook: Option<Box<dyn StoreHook>>,
    store: Option<StoreConfig>,
    /// How the modelled commands are stopped (S6): the CLI supervisor's policy, or in tests
    /// one that must be caught.
    kill_policy: command::Policy,
    /// Invariants of the user's own, on top of the workload's.
    checks: alloc::vec::Vec<Box<dyn Check>>,
}

impl Sim {
    /// A simulation of `workload` under `config`.
    pub fn new(config: SimConfig, workload: impl Workload + 'static) -> Sim {
        Sim {
            config,
            workload: Box::new(workload),
            hook: None,
            store: None,
            kill_policy: command::Policy::SUPERVISOR,
            checks: alloc::vec::Vec::new(),
        }
    }

    /// Stops the modelled commands with `policy` instead of the supervisor's (to show that
    /// the S6 check catches a policy that lets a command outlive its hold).
    #[cfg(test)]
    pub(crate) fn with_kill_policy(mut self, policy: command::Policy) -> Sim {
        self.kill_policy = policy;
        self
    }

    /// Rewrites requests before the store sees them (for deliberately broken stores).
    pub fn with_store_hook(mut self, hook: impl StoreHook + 'static) -> Sim {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Adds an invariant of the user's own (on top of the workload's
    /// [`Workload::checks`]).
    pub fn with_check(mut self, check: impl Check + 'static) -> Sim {
        self.checks.push(Box::new(check));
        self
    }

    /// Uses this store configuration (bounds, skew) instead of the default.
    pub fn with_store_config(mut self, store: StoreConfig) -> Sim {
        self.store = Some(store);
        self
    }

    /// Runs to the end, or to the first broken invariant.
    pub fn run(self) -> Result<Summary, Box<Violation>> {
        self.run_inner(None)
    }

    /// Like [`Sim::run`], telling `probe` about every store request and every report as they
    /// happen (for measurements that need global time).
    pub fn run_probed(self, probe: &mut dyn Probe) -> Result<Summary, Box<Violation>> {
        self.run_inner(Some(probe))
    }

    /// Starts the run without running it, for tests that look at it between events:
    /// [`Running::run_until`], [`Running::step`], then [`Running::finish`]. Stepping changes
    /// nothing: the events, and so the trace hash, are those of [`Sim::run`].
    pub fn start(self) -> Result<Running, Box<Violation>> {
        let mut world = self.build(None)?;
        world.begin();
        Ok(Running { world })
    }

    /// The configuration of the run.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn build<'p>(
        self,
        probe: Option<&'p mut dyn Probe>,
    ) -> Result<world::World<'p>, Box<Violation>> {
        let seed = self.config.seed;
        world::World::new(
            self.config,
            self.workload,
            self.hook,
            probe,
            self.store,
            self.kill_policy,
            self.checks,
        )
        .map_err(|message| {
            Box::new(Violation {
                seed,
                invariant: Invariant::Setup,
                message,
                event: 0,
                time: Duration::ZERO,
                trace: alloc::vec::Vec::new(),
            })
        })
    }

    fn run_inner(self, probe: Option<&mut dyn Probe>) -> Result<Summary, Box<Violation>> {
        self.build(probe)?.run()
    }
}

/// A run in progress ([`Sim::start`]): step it, look at it, finish it.
pub struct Running {
    world: world::World<'static>,
}

impl Running {
    /// Processes one event. `Ok(false)`: the run is over; call [`Running::finish`] for the
    /// end-of-run checks and the summary.
    pub fn step(&mut self) -> Result<bool, Box<Violation>> {
        self.world.step()
    }

    /// Processes every event due at or before global time `t`.
    pub fn run_until(&mut self, t: Duration) -> Result<(), Box<Violation>> {
        while self.world.next_at().is_some_and(|next| next <= t) {
            if !self.world.step()? {
                break;
            }
        }
        Ok(())
    }

    /// Global time of the last event processed.
    pub fn now(&self) -> Duration {
        self.world.now()
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.world.events()
    }

    /// The store as it is now (keys, values, versions).
    pub fn store(&self) -> &crate::server::Store {
        self.world.store()
    }

    /// What the checkers saw so far.
    pub fn checks(&self) -> CheckStats {
        self.world.stats()
    }

    /// The last `n` trace lines.
    pub fn trace_lines(&self, n: usize) -> alloc::vec::Vec<alloc::string::String> {
        self.world.trace_lines(n)
    }

    /// Runs the rest and the end-of-run checks.
    pub fn finish(self) -> Result<Summary, Box<Violation>> {
        self.world.finish()
    }
}
