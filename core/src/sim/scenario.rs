//! A whole run described by a handful of numbers, derivable from one seed and printable as
//! one line, so that a failing case can be replayed (`LEASEDLOCK_SEED`, [`Sim::replay`]).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use super::workload::{
    EditCounter, LeaderElection, LeaseContention, LockContention, SharedConnection, Timing,
};
use super::{FaultMix, Invariant, Sim, SimConfig, Summary, Violation, Workload};
use crate::rng::Rng;

/// Which ready-made workload a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadKind {
    /// [`LeaseContention`].
    Lease,
    /// [`LockContention`].
    Lock,
    /// [`EditCounter`].
    Edit,
    /// [`LeaderElection`].
    Leader,
    /// [`LeaseContention`] with manual re-acquires of varied durations.
    Reacquire,
    /// [`SharedConnection`]: several lock handles per node through the client host.
    Shared,
}

impl WorkloadKind {
    /// All of them.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Lease,
        WorkloadKind::Lock,
        WorkloadKind::Edit,
        WorkloadKind::Leader,
        WorkloadKind::Reacquire,
        WorkloadKind::Shared,
    ];

    fn name(self) -> &'static str {
        match self {
            WorkloadKind::Lease => "lease",
            WorkloadKind::Lock => "lock",
            WorkloadKind::Edit => "edit",
            WorkloadKind::Leader => "leader",
            WorkloadKind::Reacquire => "reacquire",
            WorkloadKind::Shared => "shared",
        }
    }
}

/// One run: seed, workload, size, timings and faults.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// Seed of the run.
    pub seed: u64,
    /// Workload.
    pub workload: WorkloadKind,
    /// Number of clients.
    pub clients: usize,
    /// Lease duration in milliseconds.
    pub lease_ms: u64,
    /// Renew interval in milliseconds (at most a third of the lease).
    pub renew_ms: u64,
    /// Fault classes.
    pub faults: FaultMix,
    /// Virtual run length in seconds (before the drain).
    pub run_secs: u64,
}

impl Scenario {
    /// Everything derived from the seed: workload, 2–64 clients, a 0.5–5 s lease renewed every
    /// quarter to third of it, a random fault mix, 30–90 s of virtual time.
    pub fn from_seed(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x5CE7_A210);
        let workload = WorkloadKind::ALL[rng.below(4) as usize];
        let clients = 2 + rng.below(63) as usize;
        let lease_ms = 500 + rng.below(4_501);
        let renew_ms = lease_ms / 4 + rng.below(lease_ms / 12 + 1);
        let faults = FaultMix::from_bits(rng.below(1 << 10) as u16);
        let run_secs = 30 + rng.below(61);
        Scenario {
            seed,
            workload,
            clients,
            lease_ms,
            renew_ms,
            faults,
            run_secs,
        }
    }

    /// The timings of its workload.
    pub fn timing(&self) -> Timing {
        let lease = Duration::from_millis(self.lease_ms.max(1));
        let renew = Duration::from_millis(self.renew_ms.clamp(1, self.lease_ms.max(3) / 3));
        Timing::new(lease, renew)
    }

    /// The world configuration.
    pub fn config(&self) -> SimConfig {
        let run = Duration::from_secs(self.run_secs.max(1));
        let timing = self.timing();
        let mut c = SimConfig::new(self.seed, self.clients.max(1), run);
        c.faults = self.faults.config(timing.lease, c.clients, run);
        c.request_timeout = timing.timeout;
        c.heal_at = run / 2;
        // Long enough for every started fault, lease and timeout to run out.
        c.drain = timing.lease * 6 + timing.timeout * 6 + Duration::from_secs(5);
        c
    }

    /// The workload.
    pub fn build_workload(&self) -> Result<Box<dyn Workload>, String> {
        let t = self.timing();
        let key = |s: &'static [u8]| Bytes::from_static(s);
        Ok(match self.workload {
            WorkloadKind::Lease => {
                Box::new(LeaseContention::new(key(b"lease"), t).map_err(|e| format!("{e}"))?)
            }
            WorkloadKind::Lock => Box::new(
                LockContention::new(key(b"lock"), key(b"resource"), t)
                    .map_err(|e| format!("{e}"))?,
            ),
            WorkloadKind::Edit => Box::new(
                EditCounter::new(key(b"counter-lock"), key(b"counter"), t)
                    .map_err(|e| format!("{e}"))?,
            ),
            WorkloadKind::Leader => {
                Box::new(LeaderElection::new(key(b"leader"), t).map_err(|e| format!("{e}"))?)
            }
            WorkloadKind::Reacquire => Box::new(
                LeaseContention::new(key(b"lease"), t)
                    .map_err(|e| format!("{e}"))?
                    .with_reacquire(),
            ),
            WorkloadKind::Shared => {
                Box::new(SharedConnection::new(key(b"shared-a"), key(b"shared-b"), t))
            }
        })
    }

    /// A simulation of this scenario with `config` (for tweaks such as trace capacity).
    pub fn sim_with(&self, config: SimConfig) -> Result<Sim, Box<Violation>> {
        let workload = self.build_workload().map_err(|message| {
            Box::new(Violation {
                seed: self.seed,
                invariant: Invariant::Setup,
                message,
                event: 0,
                time: Duration::ZERO,
                trace: Vec::new(),
            })
        })?;
        Ok(Sim::new(config, workload))
    }

    /// Runs it.
    pub fn run(&self) -> Result<Summary, Box<Violation>> {
        self.sim_with(self.config())?.run()
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} workload={} clients={} lease_ms={} renew_ms={} faults={:#05x} run_secs={}",
            self.seed,
            self.workload.name(),
            self.clients,
            self.lease_ms,
            self.renew_ms,
            self.faults.bits(),
            self.run_secs
        )
    }
}

/// Why a scenario line did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioParseError(pub String);

impl fmt::Display for ScenarioParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad scenario: {}", self.0)
    }
}

impl core::error::Error for ScenarioParseError {}

impl FromStr for Scenario {
    type Err = ScenarioParseError;

    /// Parses the [`Display`](fmt::Display) form; a bare number is a seed for
    /// [`Scenario::from_seed`]; fields not given keep the seed's values.
    fn from_str(s: &str) -> Result<Scenario, ScenarioParseError> {
        let s = s.trim();
        if let Ok(seed) = s.parse::<u64>() {
            return Ok(Scenario::from_seed(seed));
        }
        let bad = |what: &str| ScenarioParseError(String::from(what));
        let mut fields = s
            .split_whitespace()
            .map(|kv| kv.split_once('=').ok_or_else(|| bad(kv)));
        let mut seed = None;
        let mut rest = Vec::new();
        for kv in &mut fields {
            let (k, v) = kv?;
            if k == "seed" {
                seed = Some(v.parse::<u64>().map_err(|_| bad(v))?);
            } else {
                rest.push((k, v));
            }
        }
        let mut sc = Scenario::from_seed(seed.ok_or_else(|| bad("missing seed"))?);
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad(v));
        for (k, v) in rest {
            match k {
                "workload" => {
                    sc.workload = *WorkloadKind::ALL
                        .iter()
                        .find(|w| w.name() == v)
                        .ok_or_else(|| bad(v))?
                }
                "clients" => sc.clients = usize::try_from(num(v)?).map_err(|_| bad(v))?,
                "lease_ms" => sc.lease_ms = num(v)?,
                "renew_ms" => sc.renew_ms = num(v)?,
                "faults" => {
                    let hex = v.trim_start_matches("0x");
                    let bits = u16::from_str_radix(hex, 16).map_err(|_| bad(v))?;
                    sc.faults = FaultMix::from_bits(bits);
                }
                "run_secs" => sc.run_secs = num(v)?,
                _ => return Err(bad(k)),
            }
        }
        Ok(sc)
    }
}

/// A replayed run with its whole trace.
#[derive(Debug, Clone)]
pub struct Replay {
    /// What was run.
    pub scenario: Scenario,
    /// How it ended.
    pub result: Result<Summary, Box<Violation>>,
    /// Every trace record, as lines.
    pub trace: Vec<String>,
}

impl Sim {
    /// Replays [`Scenario::from_seed`]`(seed)` keeping the whole trace.
    pub fn replay(seed: u64) -> Replay {
        Sim::replay_scenario(&Scenario::from_seed(seed))
    }

    /// Replays `scenario` keeping the whole trace.
    pub fn replay_scenario(scenario: &Scenario) -> Replay {
        let mut config = scenario.config();
        config.trace_capacity = usize::MAX;
        config.report_lines = usize::MAX;
        let result = scenario.sim_with(config).and_then(Sim::run);
        let trace = match &result {
            Ok(s) => s.trace.iter().map(|e| format!("{e}")).collect(),
            Err(v) => v.trace.clone(),
        };
        Replay {
            scenario: scenario.clone(),
            result,
            trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn lines_round_trip() {
        for seed in 0..50 {
            let s = Scenario::from_seed(seed);
            assert!((2..=64).contains(&s.clients));
            assert!(s.renew_ms * 3 <= s.lease_ms + 3);
            let parsed: Scenario = s.to_string().parse().unwrap();
            assert_eq!(parsed, s);
        }
        assert_eq!("17".parse::<Scenario>().unwrap(), Scenario::from_seed(17));
        let s: Scenario = "seed=3 clients=5 workload=edit".parse().unwrap();
        assert_eq!((s.clients, s.workload), (5, WorkloadKind::Edit));
        assert!("seed=3 bogus=1".parse::<Scenario>().is_err());
        assert!("clients=3".parse::<Scenario>().is_err());
    }
}
