//! The state-store `Client` with a `Lease`, `Lock`, `Edit` and `Leader` on top, fed an
//! arbitrary interleaving of user commands, replies (fitting, malformed, late, duplicated),
//! notifications, connects, SUBACKs, disconnects, time jumps and raw messages.
//!
//! Checks (see `src/world.rs`): no panic; every request id completes at most once and, after a
//! final disconnect and every deadline passing, exactly once; the client's in-flight count
//! matches the ids still open and the machines never wait for more than that; no deadline is
//! left due after `handle_timeout`; lease/lock/leader events are well ordered; `safe_until`
//! is never later than send time plus the lease duration; outputs always drain.
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
