#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod client;
pub mod command;
pub mod edit;
pub mod envelope;
mod error_sources;
pub mod hex;
pub mod hlc;
pub mod host;
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
pub mod supervise;
pub mod time;

#[cfg(test)]
mod testkit;

pub use time::{Duration, Instant, Now};
