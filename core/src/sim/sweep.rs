//! Campaigns: run seed after seed of your workload until one breaks an invariant or the budget
//! is spent, and print the one line that replays the failure (VOPR-style).

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::ops::Range;
use std::time::{Duration, Instant};

use super::env::{self, REPLAY_VAR};
use super::{Sim, SimConfig, Violation};

/// What a sweep did.
#[derive(Debug)]
pub struct SweepReport {
    /// Runs made.
    pub runs: u64,
    /// Events processed by all of them.
    pub events: u64,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// The run came from `LEASEDLOCK_REPLAY` or `LEASEDLOCK_SEED` instead of the seed range.
    pub replayed: bool,
    /// The first failing run, if any.
    pub failure: Option<SweepFailure>,
}

/// A failing run of a sweep: its configuration (the replay line) and what broke.
#[derive(Debug, Clone)]
pub struct SweepFailure {
    /// The configuration; its `Display` is the replay line.
    pub config: SimConfig,
    /// What broke.
    pub violation: Box<Violation>,
}

impl SweepFailure {
    /// `LEASEDLOCK_REPLAY="<line>"`: set it and rerun the test to replay this run alone.
    pub fn replay_line(&self) -> String {
        alloc::format!("{REPLAY_VAR}=\"{}\"", self.config)
    }
}

impl fmt::Display for SweepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.violation)?;
        write!(f, "replay: {}", self.replay_line())
    }
}

impl SweepReport {
    /// Runs per second of wall-clock time.
    pub fn runs_per_sec(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Panics with the failure (the violation, its trace and the replay line) if there is one:
    /// the end of a campaign test.
    #[track_caller]
    pub fn assert_ok(&self) {
        if let Some(f) = &self.failure {
            panic!("{f}");
        }
    }
}

/// Runs `seeds` in order, each as `sim(config(seed))`, until one fails or `budget` (wall-clock
/// time) is spent; prints the replay line of a failure to stderr.
///
/// When `LEASEDLOCK_REPLAY` (a configuration line) or `LEASEDLOCK_SEED` is set, only that run
/// is made, with its whole trace kept, so the failure's line replays it exactly. A malformed
/// value panics with the reason (see [`env`](super::env)).
pub fn sweep(
    seeds: Range<u64>,
    budget: Duration,
    config: impl Fn(u64) -> SimConfig,
    mut sim: impl FnMut(SimConfig) -> Sim,
) -> SweepReport {
    let start = Instant::now();
    let replay = env::replay_config(&config).unwrap_or_else(|e| panic!("{e}"));
    let mut report = SweepReport {
        runs: 0,
        events: 0,
        elapsed: Duration::ZERO,
        replayed: replay.is_some(),
        failure: None,
    };
    let configs: Box<dyn Iterator<Item = SimConfig>> = match replay {
        Some(mut c) => {
            c.trace_capacity = usize::MAX;
            c.report_lines = usize::MAX;
            Box::new(core::iter::once(c))
        }
        None => Box::new(seeds.map(&config)),
    };
    for c in configs {
        if report.runs > 0 && start.elapsed() >= budget {
            break;
        }
        report.runs += 1;
        match sim(c.clone()).run() {
            Ok(summary) => {
                report.events += summary.events;
                if report.runs == 1 {
                    // Once per sweep: a workload that reports nothing does so on every seed.
                    for w in &summary.warnings {
                        std::eprintln!("warning: {w}");
                    }
                }
            }
            Err(violation) => {
                report.events += violation.event;
                let failure = SweepFailure {
                    config: c,
                    violation,
                };
                std::eprintln!("{failure}");
                report.failure = Some(failure);
                break;
            }
        }
    }
    report.elapsed = start.elapsed();
    report
}
