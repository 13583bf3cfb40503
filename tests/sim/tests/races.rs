//! Race exploration: proptest over scenarios (seed, clients 2–64, lease, renew, fault mix,
//! workload), shrinking toward the smallest failing configuration, plus determinism.
//!
//! Budget: `LEASEDLOCK_SIM_CASES` cases per property (default 24 in CI). A failure prints the
//! scenario line; replay it with `LEASEDLOCK_SCENARIO="<line>" cargo test -p
//! leasedlock-sim-tests --test races replay -- --nocapture` (or `LEASEDLOCK_SEED=<u64>` for a
//! seed-derived scenario).

use core::time::Duration;
use leasedlock_core::sim::env::{cases, replay_and_print, replay_request};
use leasedlock_core::sim::{FaultMix, Recurring, Scenario, WorkloadKind};
use leasedlock_sim_tests::proptest_config;
use proptest::prelude::*;

fn workload() -> impl Strategy<Value = WorkloadKind> {
    prop_oneof![
        Just(WorkloadKind::Lease),
        Just(WorkloadKind::Lock),
        Just(WorkloadKind::Edit),
        Just(WorkloadKind::Leader),
        Just(WorkloadKind::Reacquire),
        Just(WorkloadKind::Shared),
    ]
}

/// Fault bits explored in CI: all of them. Reordering (bit 2, with heavy-tail delays) was
/// masked while three findings were open (late VDEL, an S2 overrun at
/// `Scenario::from_seed(64)`, an edit counter above the committed edits); all are fixed and
/// replayed by `former_findings_hold`. `LEASEDLOCK_SIM_ALL_FAULTS` is kept for scripts (it
/// changes nothing now).
fn fault_mask() -> u16 {
    0x3ff
}

/// Shrinks toward fewer clients, fewer faults and shorter runs, keeping the seed (a smaller seed
/// is an unrelated run: shrinking it would only search again).
fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<u64>().no_shrink(),
        workload(),
        2usize..=64,
        500u64..=5_000,
        3u64..=4,
        0u16..1024,
        10u64..=40,
    )
        .prop_map(
            |(seed, workload, clients, lease_ms, div, bits, run_secs)| Scenario {
                seed,
                workload,
                clients,
                lease_ms,
                renew_ms: lease_ms / div,
                faults: FaultMix::from_bits(bits & fault_mask()),
                run_secs,
            },
        )
}

proptest! {
    #![proptest_config(proptest_config(24))]

    #[test]
    fn every_invariant_holds(s in scenario()) {
        if let Err(v) = s.run() {
            prop_assert!(false, "{s}\n{v}");
        }
    }

    #[test]
    fn same_scenario_same_trace_hash(s in scenario()) {
        let s = Scenario { clients: s.clients.min(8), ..s };
        let a = s.run();
        let b = s.run();
        match (a, b) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.trace_hash, b.trace_hash, "{}", s);
                prop_assert_eq!(a.events, b.events);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "{s}: runs differ: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

#[test]
fn seed_derived_scenarios_hold() {
    for seed in 0..u64::from(cases(8)) {
        let mut s = Scenario::from_seed(seed);
        s.faults = FaultMix::from_bits(s.faults.bits() & fault_mask());
        if let Err(v) = s.run() {
            panic!("{s}\n{v}");
        }
    }
}

/// Scenarios that once failed, replayed on every run.
/// - `seed=64 run_secs=15` (edit, 64 clients, reorder): S2, the edit machine paired the
///   acquisition's token with a renewal's `safe_until` (GET reply later than a renewal).
/// - the edit counter line: a client crashed with an applied write whose reply never came;
///   the crash now counts it as an edit of unknown outcome.
#[test]
fn former_findings_hold() {
    for line in [
        "seed=64 run_secs=15",
        "seed=13432996286874768833 workload=edit clients=31 lease_ms=3657 renew_ms=1219 faults=0x105 run_secs=12",
        // The fuzz lines of `fuzz_findings_hold`, with the scenarios' own faults.
        "seed=3103719485 workload=edit clients=1 lease_ms=200 renew_ms=66 faults=0x000 run_secs=2",
        "seed=10633888858964726538 workload=leader clients=4 lease_ms=209 renew_ms=34 faults=0x000 run_secs=5",
        // A KEYNOTIFY STOP lost in a partition left a registration behind (the client now
        // sends it again): handles dropped mid-wait on a shared connection.
        "seed=13996022009952725630 workload=shared clients=25 lease_ms=2941 renew_ms=980 faults=0x160 run_secs=16",
        "seed=13014971851135294957 workload=shared clients=22 lease_ms=3524 renew_ms=881 faults=0x279 run_secs=11",
        "seed=4608455260046464171 workload=shared clients=18 lease_ms=3689 renew_ms=1229 faults=0x3a8 run_secs=20",
        // A dropped handle's machine went before the cleanup STOP its timed-out KEYNOTIFY
        // needed (the KEYNOTIFY landed 1.75 s late, after every STOP): the host now keeps it.
        "seed=16718108529479053993 workload=shared clients=59 lease_ms=4722 renew_ms=1180 faults=0x02c run_secs=25",
        // After a loss, the workload locked again at once and abandoned the attempt: its VDEL
        // (same holder value) deleted the old grant while the lost hold's command was still
        // being stopped. The CLI releases only after its command is dead; so does the workload.
        "seed=9099647631388879748 workload=shared clients=3 lease_ms=948 renew_ms=316 faults=0x0d7 run_secs=19",
    ] {
        let s: Scenario = line.parse().expect("scenario line");
        if let Err(v) = s.run() {
            panic!("{s}\n{v}");
        }
    }
}

fn p(v: u8) -> f64 {
    f64::from(v) / 1024.0
}

/// The faults the `sim_faults` fuzz target sets directly (its scenario line omits them), in the
/// units the target derives from its input: probabilities in 1/1024, times in ms, recurring
/// faults as (gap, shortest, longest).
#[derive(Default)]
struct Fuzzed {
    rate_ppm: u32,
    skew_ms: u64,
    drop: u8,
    duplicate: u8,
    reorder: bool,
    tail: u8,
    tail_delay_ms: u64,
    notification_loss: u8,
    late_reply: u8,
    session_loss: u8,
    partition: Option<(u64, u64, u64)>,
    disconnect: Option<(u64, u64, u64)>,
    crash: Option<(u64, u64, u64)>,
}

/// Runs the scenario `line` with the fuzz target's configuration `z`; panics on a violation.
fn replay_fuzzed(line: &str, z: Fuzzed) {
    let s: Scenario = line.parse().expect("scenario line");
    let mut c = s.config();
    let ms = Duration::from_millis;
    let recurring = |r: Option<(u64, u64, u64)>| {
        r.map(|(gap, min, max)| Recurring::new(ms(gap), ms(min), ms(max)))
    };
    c.clocks.max_rate_ppm = z.rate_ppm;
    c.clocks.max_wall_skew = ms(z.skew_ms);
    let f = &mut c.faults;
    f.drop = p(z.drop);
    f.duplicate = p(z.duplicate);
    f.reorder = z.reorder;
    f.tail = p(z.tail);
    f.tail_delay = ms(z.tail_delay_ms);
    f.notification_loss = p(z.notification_loss) * 4.0;
    f.late_reply = p(z.late_reply);
    f.session_loss = p(z.session_loss) * 4.0;
    f.partition = recurring(z.partition);
    f.disconnect = recurring(z.disconnect);
    f.crash = recurring(z.crash);
    c.max_events = 200_000;
    let sim = s.sim_with(c).unwrap_or_else(|v| panic!("{s}\n{v}"));
    if let Err(v) = sim.run() {
        panic!("{s}\n{v}");
    }
}

/// `sim_faults` fuzz findings, replayed with the fuzzer's full configuration.
#[test]
fn fuzz_findings_hold() {
    // The first two: a fault started before healing outlasted the drain (a 7.7 s disconnect;
    // a GET with the 10 s default timeout under loss): the lease's bounded clean-up (exposure
    // window, sweep STOP) started only afterwards, and the leak check ran before it fired
    // ("the agent still has a timer armed after stopping"). The world now runs on past the
    // drain until every live node is at rest.
    replay_fuzzed(
        "seed=3103719485 workload=edit clients=1 lease_ms=200 renew_ms=66 faults=0x000 run_secs=2",
        Fuzzed {
            disconnect: Some((69, 7_748, 7_748)),
            ..Fuzzed::default()
        },
    );
    replay_fuzzed(
        "seed=10633888858964726538 workload=leader clients=4 lease_ms=209 renew_ms=34 faults=0x000 run_secs=5",
        Fuzzed {
            rate_ppm: 93,
            skew_ms: 27_648,
            drop: 147,
            duplicate: 147,
            reorder: true,
            tail: 147,
            tail_delay_ms: 2_779,
            notification_loss: 147,
            late_reply: 147,
            partition: Some((37_779, 7_779, 15_558)),
            ..Fuzzed::default()
        },
    );
    // A KEYNOTIFY on its way when a 9.6 s disconnect began was published again at the
    // reconnect, after the STOP of the handle dropped meanwhile: that handle's machine had
    // gone, so nothing sent the STOP that has to follow it.
    replay_fuzzed(
        "seed=795741901218906111 workload=shared clients=4 lease_ms=227 renew_ms=56 faults=0x000 run_secs=4",
        Fuzzed {
            rate_ppm: 61,
            skew_ms: 4_861,
            drop: 61,
            duplicate: 60,
            reorder: true,
            tail: 255,
            tail_delay_ms: 535,
            notification_loss: 31,
            late_reply: 1,
            disconnect: Some((317, 9_626, 9_636)),
            ..Fuzzed::default()
        },
    );
    // The client's own re-registration of a key was delayed past the STOP of its last
    // observer and landed after it: the client now sends one more STOP once it cannot land.
    replay_fuzzed(
        "seed=317 workload=shared clients=2 lease_ms=1325 renew_ms=441 faults=0x000 run_secs=5",
        Fuzzed {
            rate_ppm: 1_535,
            skew_ms: 5_535,
            drop: 255,
            duplicate: 255,
            reorder: true,
            tail: 255,
            tail_delay_ms: 535,
            notification_loss: 255,
            late_reply: 255,
            session_loss: 45,
            partition: Some((65_535, 5_679, 11_354)),
            disconnect: Some((15_677, 5_661, 6_426)),
            crash: Some((49_981, 61, 61)),
        },
    );
    // A checker false alarm: a reconnect that kept the session published an edit's answered
    // write again 7.6 s later, and the store ran it a second time (same value, same fence).
    // That is the same update, not a fourth one: the counter check now counts a request once.
    replay_fuzzed(
        "seed=4484808137160736061 workload=edit clients=2 lease_ms=517 renew_ms=129 faults=0x000 run_secs=9",
        Fuzzed {
            rate_ppm: 945,
            skew_ms: 3_738,
            duplicate: 202,
            reorder: true,
            tail: 53,
            tail_delay_ms: 535,
            notification_loss: 255,
            late_reply: 255,
            session_loss: 10,
            partition: Some((65_535, 5_679, 7_004)),
            disconnect: Some((317, 5_690, 12_347)),
            ..Fuzzed::default()
        },
    );
}

#[test]
fn different_seeds_differ() {
    let a = Scenario::from_seed(1);
    let b = Scenario {
        seed: 2,
        ..a.clone()
    };
    assert_ne!(a.run().unwrap().trace_hash, b.run().unwrap().trace_hash);
}

/// `LEASEDLOCK_SEED=<u64>` or `LEASEDLOCK_SCENARIO=<line>` replays one run with its full trace
/// (without either, replays seed 0 quietly to keep the path tested; a malformed value fails).
#[test]
fn replay() {
    match replay_request().unwrap_or_else(|e| panic!("{e}")) {
        Some(s) => {
            let r = replay_and_print(&s);
            assert!(r.result.is_ok(), "violation replayed");
        }
        None => {
            let r = leasedlock_core::sim::Sim::replay(0);
            let s = r.result.expect("seed 0 holds");
            assert_eq!(r.trace.len() as u64, s.trace.len() as u64);
            assert!(!r.trace.is_empty());
        }
    }
}
