//! End-to-end scenarios for leasedlock's runtime adapters, written once.
//!
//! Each adapter implements the small traits of [`adapter`] for its own types and runs every
//! function of [`scenarios`] against Mosquitto (`scripts/mosquitto.sh`, address from
//! `LEASEDLOCK_TEST_BROKER`, default `127.0.0.1:1883`) and an in-process emulator ([`Env`]).
//! Scenarios panic on failure and bound every wait, so a bug shows as a failure, not a hang.

pub mod adapter;
pub mod api;
pub mod broker;
pub mod env;
pub mod garbage;
pub mod scenarios;
pub mod suite;
pub mod tls;
pub mod util;

pub use adapter::*;
pub use broker::PrivateBroker;
pub use env::Env;
