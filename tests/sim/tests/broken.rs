//! A checker that never fires is not a checker: each test breaks one component from the
//! outside (through the simulator's public hooks) under a fault class and shows the run is
//! stopped with the expected invariant.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use leasedlock_core::command::Request;
use leasedlock_core::envelope::{prop, Message};
use leasedlock_core::lease::LeaseEvent;
use leasedlock_core::server::Store;
use leasedlock_core::sim::workload::{LeaseContention, LockContention, Tamper, Timing};
use leasedlock_core::sim::{
    FaultConfig, FaultMix, Invariant, Sim, SimConfig, StoreHook, Summary, Violation,
};

fn timing() -> Timing {
    Timing::new(Duration::from_secs(2), Duration::from_millis(500))
}

fn config(seed: u64, clients: usize, faults: FaultMix) -> SimConfig {
    let run = Duration::from_secs(60);
    let mut c = SimConfig::new(seed, clients, run);
    c.faults = faults.config(timing().lease, clients, run);
    c.request_timeout = timing().timeout;
    c
}

fn only(f: impl Fn(&mut FaultMix)) -> FaultMix {
    let mut m = FaultMix::NONE;
    f(&mut m);
    m
}

/// Runs seeds until one is caught; returns the violation.
fn caught(mut run: impl FnMut(u64) -> Result<(), Box<Violation>>) -> Box<Violation> {
    for seed in 0..20 {
        if let Err(v) = run(seed) {
            return v;
        }
    }
    panic!("no seed out of 20 was caught: the checker never fired");
}

/// A lease that ignores `safe_until`: it believes every grant lasts the full lease from the
/// moment the reply is handled (no margin, not from the send time) and never reports `Lost`
/// for an expiry.
fn ignores_safe_until() -> Tamper<LeaseEvent> {
    let lease = timing().lease;
    Tamper {
        event: Some(Rc::new(move |e: &mut LeaseEvent, now| match e {
            LeaseEvent::Acquired { safe_until, .. } | LeaseEvent::Renewed { safe_until, .. } => {
                *safe_until = now.mono + lease;
                true
            }
            LeaseEvent::Lost { .. } => false,
            _ => true,
        })),
        request: None,
    }
}

fn broken_lease_run(seed: u64, faults: FaultMix) -> Result<(), Box<Violation>> {
    let w = LeaseContention::new(Bytes::from_static(b"lease"), timing())
        .unwrap()
        .with_tamper(ignores_safe_until());
    Sim::new(config(seed, 4, faults), w).run().map(|_| ())
}

macro_rules! broken_lease_under {
    ($name:ident, $field:ident) => {
        #[test]
        fn $name() {
            let v = caught(|seed| broken_lease_run(seed, only(|m| m.$field = true)));
            assert!(
                matches!(
                    v.invariant,
                    Invariant::S1SingleHolder | Invariant::S2SafeUntil | Invariant::S4EventOrder
                ),
                "{v}"
            );
            assert!(!v.trace.is_empty());
        }
    };
}

broken_lease_under!(lease_ignoring_safe_until_caught_under_drop, drop);
broken_lease_under!(lease_ignoring_safe_until_caught_under_duplicate, duplicate);
broken_lease_under!(lease_ignoring_safe_until_caught_under_reorder, reorder);
broken_lease_under!(
    lease_ignoring_safe_until_caught_under_notification_loss,
    notification_loss
);
broken_lease_under!(
    lease_ignoring_safe_until_caught_under_late_reply,
    late_reply
);
broken_lease_under!(lease_ignoring_safe_until_caught_under_partition, partition);
broken_lease_under!(
    lease_ignoring_safe_until_caught_under_disconnect,
    disconnect
);
broken_lease_under!(lease_ignoring_safe_until_caught_under_pause, pause);
broken_lease_under!(lease_ignoring_safe_until_caught_under_crash, crash);
broken_lease_under!(
    lease_ignoring_safe_until_caught_under_late_expiry,
    late_expiry
);

/// The same lease without the tamper passes the same seeds: the catch is the tamper's.
#[test]
fn correct_lease_passes_where_the_broken_one_is_caught() {
    for seed in 0..3 {
        let w = LeaseContention::new(Bytes::from_static(b"lease"), timing()).unwrap();
        Sim::new(config(seed, 4, FaultMix::ALL), w)
            .run()
            .unwrap_or_else(|v| panic!("{v}"));
    }
}

/// A store that forgets fencing: it raises every request's `__ft` to the token protecting
/// the key, so a stale token is accepted.
struct ForgetsFencing;

impl StoreHook for ForgetsFencing {
    fn on_request(&mut self, msg: &mut Message, store: &Store) {
        let Ok(req) = Request::parse(&msg.payload, &Default::default()) else {
            return;
        };
        let Some(current) = store.get(req.key()).and_then(|k| k.fencing_token) else {
            return;
        };
        for (name, value) in msg.user_properties.iter_mut() {
            if name.as_ref() == prop::FENCING_TOKEN.as_bytes() {
                *value = current.to_bytes();
            }
        }
    }
}

fn lock_run(seed: u64, faults: FaultMix, forgetful: bool) -> Result<(), Box<Violation>> {
    let w = LockContention::new(
        Bytes::from_static(b"lock"),
        Bytes::from_static(b"resource"),
        timing(),
    )
    .unwrap();
    let mut c = config(seed, 6, faults);
    if faults.reorder {
        // A heavy tail on most messages, short of the 1 s Message Expiry.
        c.faults.tail = 0.5;
        c.faults.tail_delay = Duration::from_millis(950);
    }
    let sim = Sim::new(c, w);
    let sim = if forgetful {
        sim.with_store_hook(ForgetsFencing)
    } else {
        sim
    };
    sim.run().map(|_| ())
}

/// Lock contention where every holder, after unlocking, writes once more with the token it
/// gave up, `straggler` later (a process stalled between its token check and its write).
fn straggling_lock_run(
    seed: u64,
    faults: FaultMix,
    forgetful: bool,
) -> Result<Summary, Box<Violation>> {
    let mut w = LockContention::new(
        Bytes::from_static(b"lock"),
        Bytes::from_static(b"resource"),
        timing(),
    )
    .unwrap();
    // Longer than a handover plus the next holder's first write (at most `hold / 4` = 1.5 s
    // after it locks), so the stale write usually lands after a newer token's.
    w.straggler = Some(Duration::from_secs(3));
    let sim = Sim::new(config(seed, 6, faults), w);
    let sim = if forgetful {
        sim.with_store_hook(ForgetsFencing)
    } else {
        sim
    };
    sim.run()
}

/// A straggling write with a stale token reaches the store after the next holder's: a
/// correct store refuses it, this one accepts it out of token order and S3 fires. Without
/// faults and under heavy-tail delays (the reorder class).
#[test]
fn store_forgetting_fencing_is_caught() {
    for faults in [FaultMix::NONE, only(|m| m.reorder = true)] {
        let v = caught(|seed| straggling_lock_run(seed, faults, true).map(|_| ()));
        assert_eq!(v.invariant, Invariant::S3Fencing, "{v}");
        assert!(v.message.contains("accepted"), "{v}");
    }
}

/// The same runs against the correct store keep every invariant, and fencing refuses the
/// stragglers: the catch above is the store's.
#[test]
fn correct_store_refuses_the_straggling_writes() {
    for faults in [FaultMix::NONE, only(|m| m.reorder = true)] {
        for seed in 0..3 {
            let s = straggling_lock_run(seed, faults, false).unwrap_or_else(|v| panic!("{v}"));
            assert!(
                s.checks.writes_fenced > 0,
                "seed {seed}: no straggler was refused"
            );
        }
    }
}

/// A lock without its fallback timer (the official clients' lost wake-up) under
/// notification loss: waiters miss the DELETE and nobody ever takes the lock again.
#[test]
fn lock_without_fallback_under_notification_loss_breaks_progress() {
    let v = caught(|seed| {
        let mut w = LockContention::new(
            Bytes::from_static(b"lock"),
            Bytes::from_static(b"resource"),
            timing(),
        )
        .unwrap();
        w.options.fallback = Some(Duration::from_secs(100_000));
        // Each node locks once: progress depends on waiters waking up.
        w.timing.think = Duration::from_secs(100_000);
        w.liveness = Some(Duration::from_secs(20));
        let mut c = config(seed, 4, FaultMix::NONE);
        c.run_for = Duration::from_secs(120);
        c.heal_at = Duration::from_secs(30);
        c.faults = FaultConfig {
            notification_loss: 1.0,
            ..FaultConfig::default()
        };
        Sim::new(c, w).run().map(|_| ())
    });
    assert_eq!(v.invariant, Invariant::L1Progress, "{v}");
}

/// Former finding: with heavy-tail delays a release VDEL whose outcome was unknown landed
/// after the same client re-acquired and deleted its new grant (S1). The lease now refuses a
/// new grant while one of its releases may still be applied.
#[test]
fn late_vdel_no_longer_deletes_the_next_term() {
    for seed in 0..20 {
        lock_run(seed, only(|m| m.reorder = true), false).unwrap_or_else(|v| panic!("{v}"));
    }
}
