//! Helpers for the simulator race tests: the CI budget and the replay environment variables.
//!
//! - `LEASEDLOCK_SIM_CASES=<n>`: proptest cases per property (default: the CI budget).
//! - `LEASEDLOCK_SEED=<u64>`: replay `Scenario::from_seed(seed)` with its full trace.
//! - `LEASEDLOCK_SCENARIO="seed=.. workload=.. clients=.. ..."`: replay an exact (shrunk)
//!   scenario line as printed by a failing test.

use leasedlock_core::sim::{Replay, Scenario, Sim};

/// Proptest cases per property: `LEASEDLOCK_SIM_CASES` or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("LEASEDLOCK_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The scenario named by `LEASEDLOCK_SCENARIO` or `LEASEDLOCK_SEED`, if any.
pub fn replay_request() -> Option<Scenario> {
    if let Ok(line) = std::env::var("LEASEDLOCK_SCENARIO") {
        return line.parse().ok();
    }
    std::env::var("LEASEDLOCK_SEED")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Scenario::from_seed)
}

/// Replays `scenario` and prints its whole trace.
pub fn replay_and_print(scenario: &Scenario) -> Replay {
    let r = Sim::replay_scenario(scenario);
    println!("replaying {}", r.scenario);
    for line in &r.trace {
        println!("{line}");
    }
    match &r.result {
        Ok(s) => println!(
            "ok: {} events, trace hash {:016x}, {:?} virtual",
            s.events, s.trace_hash, s.virtual_time
        ),
        Err(v) => println!("{v}"),
    }
    r
}
