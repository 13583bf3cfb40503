//! The client host (`core::host`, what every adapter runs) over the state-store `Client`, with
//! two lease handles and two lock handles sharing a name each, an edit and a leader, fed an
//! arbitrary interleaving of user operations, abandoned calls, dropped handles, a close,
//! direct requests and observation streams, replies (fitting, malformed, late, duplicated),
//! notifications, connects, SUBACKs, disconnects, time jumps and raw messages.
//!
//! Checks (see `src/world.rs`): no panic; every request id completes exactly once; every host
//! call ends exactly once; no machine outlives its handle; the client's in-flight count matches
//! the ids still open; no deadline is left due after a timeout; leader events are well
//! ordered; `safe_until` is never later than now plus the longest duration asked; outputs
//! always drain.
#![no_main]

use leasedlock_fuzz::world::{Op, World};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, u32, (u8, u8), Vec<Op>)| {
    let (seed, wall_s, caps, ops) = input;
    // A wall clock somewhere in 2020-2156, in whole seconds so HLC texts stay realistic.
    let wall_ms = 1_600_000_000_000 + u64::from(wall_s) * 1_000;
    let mut world = World::new(seed, wall_ms, caps);
    for op in ops.iter().take(256) {
        world.step(op);
    }
    world.finish();
});
