//! Simulator benchmark: simulated events per second on one core, and the herd behaviour of the
//! lock machine (store requests, SET attempts and delay per handover with 1–1,000 waiters),
//! against a naive wake-all loop like the official clients'.
//!
//! ```text
//! cargo run --release -p leasedlock-core --features sim --example sim_bench
//! cargo run --release -p leasedlock-core --features sim --example sim_bench -- --quick
//! cargo run --release -p leasedlock-core --features sim --example sim_bench -- --throughput
//! cargo run --release -p leasedlock-core --features sim --example sim_bench -- --handover
//! ```
//!
//! Throughput is measured in CPU time of the benchmark thread (`/proc/thread-self/schedstat`,
//! wall time where that is missing), so other load on the machine does not lower it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use leasedlock_core::command::{Request, SetCondition};
use leasedlock_core::envelope::Message;
use leasedlock_core::rng::Rng;
use leasedlock_core::sim::workload::{LockContention, Timing};
use leasedlock_core::sim::{FaultMix, Probe, Report, Scenario, Sim, SimConfig, WorkloadKind};

/// CPU time of this thread, in nanoseconds (or wall time since `start` without procfs).
fn cpu_ns(start: Instant) -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| start.elapsed().as_nanos() as u64)
}

struct Throughput {
    runs: usize,
    events: u64,
    cpu_ns: u64,
    failed: usize,
}

fn throughput(scenarios: impl Iterator<Item = Scenario>) -> Throughput {
    let start = Instant::now();
    let mut t = Throughput {
        runs: 0,
        events: 0,
        cpu_ns: 0,
        failed: 0,
    };
    for s in scenarios {
        let before = cpu_ns(start);
        let r = s.run();
        t.cpu_ns += cpu_ns(start) - before;
        t.runs += 1;
        match r {
            Ok(sum) => {
                t.events += sum.events;
            }
            Err(v) => {
                t.events += v.event;
                t.failed += 1;
            }
        }
    }
    t
}

/// A scenario drawn from the ranges of `tests/sim/tests/races.rs` (its CI fault mask: no
/// reordering), to estimate the simulated events of one CI case.
fn ci_like(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed ^ 0xC1);
    let lease_ms = 500 + rng.below(4_501);
    Scenario {
        seed,
        workload: WorkloadKind::ALL[rng.below(4) as usize],
        clients: 2 + rng.below(63) as usize,
        lease_ms,
        renew_ms: lease_ms / (3 + rng.below(2)),
        faults: FaultMix::from_bits(rng.below(1 << 10) as u16 & !(1 << 2)),
        run_secs: 10 + rng.below(31),
    }
}

/// Measures handovers of one lock: the delay from the holder's unlock to the next holder's
/// `Locked`, and what reached the store from one `Locked` to the next (requests on the lock
/// key, and SET NX/NEX attempts other than the holder's renewals). A handover counts only if
/// the new holder was already waiting (its KEYNOTIFY reached the store) when the old one
/// unlocked; otherwise nobody was waiting and it measures nothing about the herd.
struct Handovers {
    key: Bytes,
    warmup: Duration,
    waiting_since: Vec<Option<Duration>>,
    holder: Option<usize>,
    released_at: Option<Duration>,
    requests: u64,
    sets: u64,
    delays: Vec<Duration>,
    per_requests: Vec<u64>,
    per_sets: Vec<u64>,
    /// Which nodes won a counted handover (fairness: a loop that favours the newest waiter
    /// hands over among few nodes).
    won: Vec<bool>,
}

impl Handovers {
    fn new(key: Bytes, warmup: Duration, nodes: usize) -> Handovers {
        Handovers {
            key,
            warmup,
            waiting_since: vec![None; nodes],
            holder: None,
            released_at: None,
            requests: 0,
            sets: 0,
            delays: Vec::new(),
            per_requests: Vec::new(),
            per_sets: Vec::new(),
            won: vec![false; nodes],
        }
    }
}

impl Probe for Handovers {
    fn on_store_request(&mut self, at: Duration, node: usize, request: &Message) {
        let Ok(req) = Request::parse(&request.payload, &Default::default()) else {
            return;
        };
        if *req.key() != self.key {
            return;
        }
        self.requests += 1;
        if let (Request::KeyNotify { .. }, Some(w)) = (&req, self.waiting_since.get_mut(node)) {
            w.get_or_insert(at);
        }
        if let Request::Set { condition, .. } = req {
            let renewal = self.holder == Some(node) && condition == SetCondition::NotExistsOrEqual;
            if condition != SetCondition::Always && !renewal {
                self.sets += 1;
            }
        }
    }

    fn on_report(&mut self, at: Duration, node: usize, report: &Report) {
        if *report.key() != self.key {
            return;
        }
        match report {
            Report::Released { .. } | Report::Lost { .. } if self.holder == Some(node) => {
                self.holder = None;
                self.released_at = Some(at);
            }
            Report::Acquired { .. } => {
                self.holder = Some(node);
                let waited = self.waiting_since.get_mut(node).and_then(Option::take);
                if let Some(released) = self.released_at.take() {
                    if released >= self.warmup && waited.is_some_and(|w| w < released) {
                        self.delays.push(at - released);
                        self.per_requests.push(self.requests);
                        self.per_sets.push(self.sets);
                        if let Some(w) = self.won.get_mut(node) {
                            *w = true;
                        }
                    }
                }
                self.requests = 0;
                self.sets = 0;
            }
            _ => {}
        }
    }
}

fn pct<T: Copy + Ord>(v: &mut [T], p: usize) -> Option<T> {
    v.sort_unstable();
    let i = (v.len() * p / 100).min(v.len().checked_sub(1)?);
    v.get(i).copied()
}

struct Row {
    handovers: usize,
    requests: (u64, u64, f64),
    sets: (u64, u64, f64),
    delay: (Duration, Duration),
    winners: usize,
    events: u64,
}

/// The waiting loop under test.
#[derive(Clone, Copy)]
enum Variant {
    /// The lock machine with its defaults (adaptive DELETE jitter from 1 ms up to half the
    /// lease, fallback = lease duration plus up to half of it, pushed back by news).
    Lock,
    /// The lock machine with the fallback pushed out of the run, which isolates the jitter.
    NoPolls,
    /// Zero jitter: every waiter sends its SET as soon as it sees the DELETE, like the
    /// official clients' wake-all loop.
    Naive,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Lock => "Lock (defaults)",
            Variant::NoPolls => "Lock, no fallback polls",
            Variant::Naive => "naive wake-all",
        }
    }
}

/// `waiters` nodes wait while one holds the lock for a critical section of one to three fenced
/// writes (up to 200 ms apart), unlocks, rests 150 ms (longer than a handover, shorter than
/// most critical sections) and queues again, so `waiters` nodes wait at almost every handover
/// and the one that just unlocked is not among them. `naive` sets the DELETE jitter to zero: every waiter sends its SET as
fn handover(waiters: usize, variant: Variant, run: Duration, seed: u64) -> Result<Row, String> {
    let key = Bytes::from_static(b"lock");
    let mut timing = Timing::new(Duration::from_secs(2), Duration::from_millis(500));
    timing.hold = Duration::from_millis(800);
    timing.think = Duration::ZERO;
    let mut w = LockContention::new(key.clone(), Bytes::from_static(b"resource"), timing)
        .map_err(|e| e.to_string())?;
    w.rest = Duration::from_millis(150);
    match variant {
        Variant::Lock => {}
        Variant::NoPolls => w.options.fallback = Some(Duration::from_secs(3_600)),
        Variant::Naive => w.options.max_jitter = Some(Duration::ZERO),
    }
    let mut config = SimConfig::new(seed, waiters + 1, run);
    config.request_timeout = timing.timeout;
    let mut probe = Handovers::new(key, Duration::from_secs(5), waiters + 1);
    let summary = Sim::new(config, w)
        .run_probed(&mut probe)
        .map_err(|v| v.to_string())?;
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    let (mr, ms) = (mean(&probe.per_requests), mean(&probe.per_sets));
    let none = || "no handovers".to_string();
    Ok(Row {
        handovers: probe.delays.len(),
        requests: (
            pct(&mut probe.per_requests, 50).ok_or_else(none)?,
            pct(&mut probe.per_requests, 99).ok_or_else(none)?,
            mr,
        ),
        sets: (
            pct(&mut probe.per_sets, 50).ok_or_else(none)?,
            pct(&mut probe.per_sets, 99).ok_or_else(none)?,
            ms,
        ),
        delay: (
            pct(&mut probe.delays, 50).ok_or_else(none)?,
            pct(&mut probe.delays, 99).ok_or_else(none)?,
        ),
        winners: probe.won.iter().filter(|w| **w).count(),
        events: summary.events,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = |part: &str| {
        !args
            .iter()
            .any(|a| a == "--throughput" || a == "--handover")
            || args.iter().any(|a| a == part)
    };
    if only("--throughput") {
        throughput_table(quick);
    }
    if only("--handover") {
        handover_table(quick);
    }
}

fn throughput_table(quick: bool) {
    println!("## Throughput (one core, CPU time)\n");
    println!("| scenarios | runs (stopped at a violation) | events | CPU s | events/s |");
    println!("|---|---:|---:|---:|---:|");
    let seeds = if quick { 20 } else { 200 };
    let sets: [(&str, Box<dyn Iterator<Item = Scenario>>); 2] = [
        (
            "Scenario::from_seed(0..n): all workloads, 2-64 clients, 30-90 s, random fault mix",
            Box::new((0..seeds).map(Scenario::from_seed)),
        ),
        (
            "races.rs ranges: all workloads, 2-64 clients, 10-40 s, faults without reorder",
            Box::new((0..seeds).map(ci_like)),
        ),
    ];
    for (name, scenarios) in sets {
        let t = throughput(scenarios);
        println!(
            "| {name} | {} ({}) | {} ({:.0} per run) | {:.2} | {:.0} |",
            t.runs,
            t.failed,
            t.events,
            t.events as f64 / t.runs.max(1) as f64,
            t.cpu_ns as f64 / 1e9,
            t.events as f64 / (t.cpu_ns as f64 / 1e9)
        );
    }
}

fn handover_table(quick: bool) {
    println!("\n## Lock handover (no faults, lease 2 s, one-way delay 0.2-2.2 ms)\n");
    println!(
        "| waiters | loop | handovers | store requests/handover p50 / p99 (mean) | \
         SET attempts/handover p50 / p99 (mean) | delay p50 / p99 ms | distinct new holders | events |"
    );
    println!("|---:|---|---:|---|---|---|---:|---:|");
    let run = Duration::from_secs(if quick { 20 } else { 120 });
    for waiters in [1, 10, 100, 1_000] {
        for variant in [Variant::Lock, Variant::NoPolls, Variant::Naive] {
            let name = variant.name();
            match handover(waiters, variant, run, 7) {
                Ok(r) => println!(
                    "| {waiters} | {name} | {} | {} / {} ({:.1}) | {} / {} ({:.1}) | {} / {} | {} | {} |",
                    r.handovers,
                    r.requests.0,
                    r.requests.1,
                    r.requests.2,
                    r.sets.0,
                    r.sets.1,
                    r.sets.2,
                    ms(r.delay.0),
                    ms(r.delay.1),
                    r.winners,
                    r.events
                ),
                Err(e) => println!("| {waiters} | {name} | failed: {e} |||||"),
            }
        }
    }
}
