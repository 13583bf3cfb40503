//! A hybrid clock driven by a fuzzer-chosen sequence of ticks and updates.
//!
//! Checks the docs/protocol.md §6.2 rules as invariants: a tick strictly advances; an update never
//! moves the clock back; a step that moves the clock never puts it more than the drift limit ahead
//! of the wall clock; a failed step leaves the clock unchanged.
#![no_main]

use arbitrary::Arbitrary;
use leasedlock_core::hlc::{Hlc, HybridClock};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Tick {
        wall_ms: u64,
    },
    Update {
        wall_ms: u64,
        millis: u64,
        counter: u64,
        same_node: bool,
    },
}

fuzz_target!(|input: (u16, Vec<Step>)| {
    let (drift, steps) = input;
    let drift = u64::from(drift);
    let Ok(mut clock) = HybridClock::new("self", drift) else {
        panic!("a valid node id was rejected");
    };
    for step in steps {
        let before = clock.current().clone();
        let (result, wall_ms, is_tick) = match step {
            Step::Tick { wall_ms } => {
                let r = clock.tick(wall_ms);
                if let Ok(v) = &r {
                    assert_eq!(v, clock.current());
                }
                (r.map(|_| ()), wall_ms, true)
            }
            Step::Update {
                wall_ms,
                millis,
                counter,
                same_node,
            } => {
                let node = if same_node { "self" } else { "peer" };
                let other = Hlc::new(millis, counter, node).expect("valid node");
                let r = clock.update(&other, wall_ms);
                if r.is_ok() && !same_node {
                    assert!(clock.current() > &other.clone_with_node_of(&before));
                }
                (r, wall_ms, false)
            }
        };
        match result {
            Ok(()) => {
                if is_tick {
                    assert!(clock.current() > &before, "tick did not advance");
                } else {
                    assert!(clock.current() >= &before, "update moved the clock back");
                }
                // An ignored update (own node id) may leave a clock that was already ahead of a
                // wall clock which has since gone backwards; every value actually committed must
                // be within the drift limit.
                if clock.current() != &before {
                    assert!(clock.current().millis.saturating_sub(wall_ms) <= drift);
                    assert!(!clock.too_far_ahead(clock.current(), wall_ms));
                }
            }
            Err(_) => assert_eq!(clock.current(), &before, "a failed step changed the clock"),
        }
    }
});

/// `other` with the clock's own node id, so the comparison is on (millis, counter) only.
trait WithNode {
    fn clone_with_node_of(&self, clock_value: &Hlc) -> Hlc;
}

impl WithNode for Hlc {
    fn clone_with_node_of(&self, clock_value: &Hlc) -> Hlc {
        Hlc::new(self.millis, self.counter, clock_value.node_bytes().clone()).expect("valid node")
    }
}
