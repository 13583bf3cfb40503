//! The real-process fault suite: `leasedlock lock` processes and library clients on both
//! runtimes (the `contender` binary of this crate) take turns on one lock through the emulator
//! on a Mosquitto broker of their own, while the tests inject faults: a loopback TCP proxy
//! ([`proxy`]), signals to the participants, broker and emulator restarts ([`procs`]).
//!
//! Every participant appends to one shared log ([`record`]), stamped with `CLOCK_MONOTONIC`
//! ([`clock`]), the one clock of the machine that all of them read; the checks run over that
//! log: no two critical sections overlap, fencing tokens strictly increase from one holder to
//! the next, the store never accepts a write fenced with an older token after one with a newer
//! token, and a holder that lost the lock has its fenced write refused.
//!
//! See README.md for how to run it and the scenario table.

pub mod clock;
pub mod procs;
pub mod proxy;
pub mod record;
pub mod scenario;
