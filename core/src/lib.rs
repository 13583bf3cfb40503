//! `leasedlock-core`: the sans-IO protocol core of leasedlock.
//!
//! Everything in this crate is a pure function or a pure state machine: inputs (MQTT messages as
//! plain data, user commands, timer expiries) come in together with the current time, and outputs
//! (messages to publish, subscriptions, completions, events, the next deadline) are drained with
//! `poll_*` methods. The crate never reads a clock, never draws a random number from the OS and
//! never performs I/O, so the same inputs always produce the same outputs.
//!
//! Layers, bottom up:
//! - [`hex`], [`hlc`], [`resp3`]: wire codecs.
//! - [`command`]: typed state-store requests and replies, with the service's error strings.
//! - [`envelope`]: the MQTT 5 request/response/notification envelope as plain data.
//! - [`client`]: the state-store client machine (in-flight table, timeouts, reconnects).
//! - [`lease`], [`lock`], [`edit`], [`leader`]: lease, lock, edit-under-lock and leader-election
//!   machines driven through [`client::Requester`]; [`machine`] routes client outputs to them;
//!   [`observe`] decides the fan-out of key notifications to many subscribers.
//! - [`server`]: the state store itself as a pure model (the emulator and simulator drive it).
//! - `sim` (feature `sim`): a deterministic simulator that runs many clients against the store
//!   model over a faulty network in virtual time and checks the safety invariants.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod client;
pub mod command;
pub mod edit;
pub mod envelope;
mod error_sources;
pub mod hex;
pub mod hlc;
pub mod leader;
pub mod lease;
pub mod lock;
pub mod machine;
pub mod observe;
pub mod resp3;
pub mod rng;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;

#[cfg(test)]
mod testkit;

pub use time::{Duration, Instant, Now};
