//! The deterministic simulator (`core::sim`, feature `sim`) fed an arbitrary fault schedule:
//! the fuzzer picks the workload (lease, lock, edit, leader), 1–4 clients, lease and renew
//! timings, node clock errors and every fault parameter (loss, duplication, reordering and
//! its heavy tail, lost notifications, late replies, partitions, disconnects with and without
//! session loss, pauses, crashes, late expiry) plus the seed that places them in time.
//!
//! Checks: no panic, and no invariant the simulator checks is broken (S1 single holder, S2
//! safe_until, S3 fencing, S4 event order, L1 progress after healing, L2 undisturbed holder,
//! exactly one outcome per request, no leaks, edit counter). A violation panics with the
//! simulator's report, the scenario line and the decoded input (the line alone lacks the
//! clock and fault fields set here; `fuzz_findings_hold` in `tests/sim/tests/races.rs` shows
//! how to replay the full configuration).
#![no_main]

use arbitrary::Arbitrary;
use core::time::Duration;
use leasedlock_core::sim::{FaultMix, Invariant, Recurring, Scenario, WorkloadKind};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct ArbRecurring {
    gap_ms: u16,
    min_ms: u16,
    extra_ms: u16,
}

impl ArbRecurring {
    fn get(&self) -> Recurring {
        let min = Duration::from_millis(u64::from(self.min_ms % 10_000));
        Recurring::new(
            Duration::from_millis(u64::from(self.gap_ms).max(1)),
            min,
            min + Duration::from_millis(u64::from(self.extra_ms % 10_000)),
        )
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    workload: u8,
    clients: u8,
    lease_ms: u16,
    renew_div: u8,
    run_secs: u8,
    rate_ppm: u16,
    skew_ms: u16,
    /// Probabilities in 1/1024 units, capped per field below.
    drop: u8,
    duplicate: u8,
    reorder: bool,
    tail: u8,
    tail_delay_ms: u16,
    notification_loss: u8,
    late_reply: u8,
    partition: Option<ArbRecurring>,
    disconnect: Option<ArbRecurring>,
    session_loss: u8,
    pause: Option<ArbRecurring>,
    crash: Option<ArbRecurring>,
    expiry_lateness_ms: u8,
}

fn p(v: u8) -> f64 {
    f64::from(v) / 1024.0
}

fuzz_target!(|input: Input| {
    let workload = WorkloadKind::ALL[usize::from(input.workload) % WorkloadKind::ALL.len()];
    let lease_ms = 200 + u64::from(input.lease_ms % 2_800);
    let scenario = Scenario {
        seed: input.seed,
        workload,
        clients: 1 + usize::from(input.clients % 4),
        lease_ms,
        renew_ms: lease_ms / (3 + u64::from(input.renew_div % 5)),
        faults: FaultMix::NONE,
        run_secs: 2 + u64::from(input.run_secs % 9),
    };
    let mut config = scenario.config();
    config.clocks.max_rate_ppm = u32::from(input.rate_ppm % 2_000);
    // Below the 60 s HLC drift bound, as the simulator requires.
    config.clocks.max_wall_skew = Duration::from_millis(u64::from(input.skew_ms % 30_000));
    let f = &mut config.faults;
    f.drop = p(input.drop);
    f.duplicate = p(input.duplicate);
    f.reorder = input.reorder;
    f.tail = p(input.tail);
    f.tail_delay = Duration::from_millis(u64::from(input.tail_delay_ms % 5_000));
    f.notification_loss = p(input.notification_loss) * 4.0;
    f.late_reply = p(input.late_reply);
    f.partition = input.partition.as_ref().map(ArbRecurring::get);
    f.disconnect = input.disconnect.as_ref().map(ArbRecurring::get);
    f.session_loss = p(input.session_loss) * 4.0;
    f.pause = input.pause.as_ref().map(ArbRecurring::get);
    f.crash = input.crash.as_ref().map(ArbRecurring::get);
    f.expiry_lateness = Duration::from_millis(u64::from(input.expiry_lateness_ms));
    // Bounded work per input: a run that would go on longer stops without the end checks.
    config.max_events = 200_000;
    config.trace_capacity = 64;
    config.report_lines = 64;
    let sim = match scenario.sim_with(config) {
        Ok(sim) => sim,
        Err(v) => panic!("scenario {scenario} could not be built: {v}"),
    };
    if let Err(v) = sim.run() {
        if v.invariant != Invariant::Setup {
            // The scenario line omits the fault fields set above: the input replays it.
            panic!("{scenario}\n{input:?}\n{v}");
        }
    }
});
