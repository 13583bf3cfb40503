//! Side-by-side latency of leasedlock's runtime adapters.
//!
//! One run, one broker, one emulator: the raw MQTT 5 request/reply round trip (a bare rumqttc
//! echo, no state store, no adapter) is the baseline, and every adapter measurement is printed
//! as a ratio to it, so numbers from a loaded shared machine stay comparable. The adapters are
//! measured in interleaved rounds (baseline, tokio, async-std, baseline, ...) so that load
//! from other processes falls on all of them alike.
//!
//! The per-adapter code is written once ([`adapter_side!`]) and instantiated for each crate:
//! the adapters have the same public API, and the benchmark only compiles while they do.

pub mod echo;
pub mod measure;
pub mod official;
pub mod process;
pub mod sides;
pub mod wire;
pub mod world;

/// The repository README's Rust code, compiled by `cargo test --doc -p leasedlock-adapter-bench`
/// (this crate depends on both adapters the README uses), so the README cannot drift from the
/// API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct RepositoryReadme;
